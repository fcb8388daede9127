//! A webhook receiver on a free loopback port: the person an alert is meant to reach. Every
//! POST body is kept, parsed as JSON, with the moment it arrived; each is answered 200 before
//! the next is read. Stopped and its thread joined on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One notification as the receiver got it.
#[derive(Clone, Debug)]
pub struct Notification {
    pub at: Instant,
    pub body: serde_json::Value,
}

pub struct Receiver {
    pub port: u16,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    match read_post(stream) {
                        Ok(Some(body)) => received.lock().unwrap().push(Notification {
                            at: Instant::now(),
                            body: serde_json::from_slice(&body).unwrap_or_else(|e| {
                                serde_json::json!({"unparsable": e.to_string(),
                                    "text": String::from_utf8_lossy(&body)})
                            }),
                        }),
                        Ok(None) => {}
                        Err(e) => eprintln!("webhook receiver: {e}"),
                    }
                }
            })
        };
        Receiver {
            port,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/alerts", self.port)
    }

    /// Every notification so far, oldest first.
    pub fn notifications(&self) -> Vec<Notification> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request; answers 200 and returns the body of a POST (None for anything else,
/// answered 405). Bodies come with Content-Length from Alertmanager's Go client.
fn read_post(stream: TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let post = request_line.starts_with("POST ");
    let status = if post {
        "200 OK"
    } else {
        "405 Method Not Allowed"
    };
    reader.get_mut().write_all(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    Ok(post.then_some(body))
}
