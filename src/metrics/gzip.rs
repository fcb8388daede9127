//! The exposition's gzip, in one place: the gzip member that a scan writes as it encodes
//! (RFC 1952, `flate2`'s raw deflate), the splice that replaces its live tail after a sweep
//! without compressing the scan's families again, and the inflate, a chunk at a time, for a
//! client that does not take gzip. What the splice saves against compressing the whole text
//! again is measured in docs/performance.md ("The gzip splice").

use std::sync::{Arc, OnceLock};

use bytes::{Buf, Bytes};

use super::encode::TextOut;

/// One encoded exposition, served until the next scan or sweep replaces it: held gzipped, with
/// the length of its text. Prometheus asks for gzip, and then the text is held by no one. A
/// client that does not take gzip is sent the text inflated once for this exposition and kept
/// beside it ([`Exposition::plain_text`]): while plain clients ask, one copy of the text
/// (2 MB at 10,000 processes) lives as long as the exposition, and each plain scrape after the
/// first costs no inflate (docs/performance.md, "Plain scrapes"). A text longer than
/// [`Exposition::SHARED_TEXT_MAX`] is inflated by each plain scrape as it is sent instead.
#[derive(Clone, Debug)]
pub struct Exposition {
    gzip: Bytes,
    text_len: usize,
    /// The text, inflated by the first plain scrape of this exposition; `None` inside where
    /// the gzip did not inflate (an exporter's bug, which [`Exposition::plain`] reports).
    text: Arc<OnceLock<Option<Bytes>>>,
}

impl Exposition {
    /// The exposition of `text`, compressed as a scan's is.
    pub fn of_text(text: &[u8]) -> Exposition {
        Spliced::new(text, text.len()).exposition()
    }

    /// The gzip member, as a client that accepts gzip is sent it.
    pub fn gzip(&self) -> &Bytes {
        &self.gzip
    }

    /// The length of the text: a plain response's Content-Length.
    pub fn text_len(&self) -> usize {
        self.text_len
    }

    /// The text, inflated whole: for tests and tools. A scrape reads [`Exposition::plain`].
    pub fn text(&self) -> Vec<u8> {
        self.plain().read(usize::MAX).map_or_else(Vec::new, |text| {
            text.expect("an exposition's own gzip inflates")
        })
    }

    /// The longest text shared between plain scrapes ([`Exposition::plain_text`]): what the
    /// kernel's send buffer takes whole (`net.ipv4.tcp_wmem`'s default maximum), so that a
    /// client that stops reading leaves the exporter holding nothing of it once written. A
    /// longer text is inflated by each scrape as it is sent ([`Exposition::plain`]), so that
    /// slow clients never pin old expositions' texts.
    pub const SHARED_TEXT_MAX: usize = 4 << 20;

    /// The text, inflated by the first caller for this exposition and shared by every caller
    /// after it: callers at the same time wait for the one inflate. `None` where the gzip does
    /// not inflate to its length and CRC (an exporter's bug: [`Exposition::plain`] says how).
    pub fn plain_text(&self) -> Option<Bytes> {
        self.text
            .get_or_init(|| {
                self.plain()
                    .read(usize::MAX)
                    .map_or(Some(Bytes::new()), |text| text.ok().map(Bytes::from))
            })
            .clone()
    }

    /// The text, to be inflated a chunk at a time ([`Plain::next_chunk`]).
    pub fn plain(&self) -> Plain {
        Plain {
            gzip: flate2::bufread::GzDecoder::new(self.gzip.clone().reader()),
            remaining: self.text_len,
        }
    }
}

/// An exposition's text being inflated, a chunk at a time: what it holds is the inflate state
/// (42 KiB: the 32 KiB window and the tables) and a reference to the gzip, whose allocation
/// the exposition shares.
pub struct Plain {
    gzip: flate2::bufread::GzDecoder<bytes::buf::Reader<Bytes>>,
    remaining: usize,
}

impl Plain {
    /// The next at most `max` bytes of the text, each chunk an allocation of its own; `None`
    /// after the last. The last chunk comes only once the gzip's trailer (the text's CRC and
    /// length) has been checked: an error instead of it says that the text was not the
    /// exposition's, and is an exporter's bug.
    pub fn next_chunk(&mut self, max: usize) -> Option<std::io::Result<Bytes>> {
        self.read(max).map(|chunk| chunk.map(Bytes::from))
    }

    fn read(&mut self, max: usize) -> Option<std::io::Result<Vec<u8>>> {
        if self.remaining == 0 || max == 0 {
            return None;
        }
        let mut chunk = vec![0; self.remaining.min(max)];
        let read = std::io::Read::read_exact(&mut self.gzip, &mut chunk).and_then(|()| {
            self.remaining -= chunk.len();
            if self.remaining > 0 {
                return Ok(());
            }
            // Read past the end, so that the decoder reads and checks the trailer.
            match std::io::Read::read(&mut self.gzip, &mut [0; 1])? {
                0 => Ok(()),
                _ => Err(std::io::Error::other("the gzip holds more than its length")),
            }
        });
        Some(match read {
            Ok(()) => Ok(chunk),
            Err(e) => {
                self.remaining = 0;
                Err(e)
            }
        })
    }

    /// The bytes of text still to come.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

/// A gzip whose text is a head, compressed once, and a tail that is replaced ([`Self::with`]):
/// the last exposition, whose head is the scan's families and whose tail the live ones. The
/// gzip is one member: the head as raw deflate ended by a sync flush, then the tail as deflate
/// blocks of their own (RFC 1951 §3.2.4, RFC 1952), so that a sweep compresses only its own
/// few lines; the CRC of the whole is combined from the parts'. The exposition served and this
/// are one allocation: a sweep copies the head's deflate into its new exposition, and the old
/// one goes when nothing serves it any longer.
#[derive(Default)]
pub struct Spliced {
    /// The length of the text: the head, then the tail.
    text_len: usize,
    /// Where the head ends in the text.
    head_len: usize,
    gzip: Bytes,
    /// Where the head's deflate ends in `gzip`.
    deflate_end: usize,
    /// The CRC of the head.
    crc: flate2::Crc,
}

/// The gzip header: deflate, no flags, no time, unknown OS (as flate2 writes it).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl Spliced {
    /// `text` whole: its first `head_len` bytes the head, the rest the tail.
    pub fn new(text: &[u8], head_len: usize) -> Spliced {
        let (head, tail) = text.split_at(head_len);
        let mut out = Writer::new(text.len() / 16);
        out.buf().extend_from_slice(head);
        out.finish(tail)
    }

    /// The same head followed by `tail`: its deflate copied, not its text.
    pub fn with(&self, tail: &[u8]) -> Spliced {
        let mut gzip = Vec::with_capacity(self.deflate_end + tail.len() / 4 + 64);
        gzip.extend_from_slice(&self.gzip[..self.deflate_end]);
        finish_gzip(&self.crc, tail, &mut gzip);
        Spliced {
            text_len: self.head_len + tail.len(),
            head_len: self.head_len,
            gzip: exact(gzip),
            deflate_end: self.deflate_end,
            crc: {
                let mut crc = flate2::Crc::new();
                crc.combine(&self.crc);
                crc
            },
        }
    }

    /// Where the head ends in the text.
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// The length of the gzip, to size the next one.
    pub fn gzip_len(&self) -> usize {
        self.gzip.len()
    }

    /// The exposition served: this gzip, shared.
    pub fn exposition(&self) -> Exposition {
        Exposition {
            gzip: self.gzip.clone(),
            text_len: self.text_len,
            text: Arc::default(),
        }
    }

    /// The text, inflated.
    pub fn text(&self) -> Vec<u8> {
        self.exposition().text()
    }
}

/// A head written ([`TextOut`]) and compressed as it is: a gzip header, then raw deflate of
/// every [`SPILL`] bytes of text, so that no more text than that is held.
pub struct Writer {
    /// Text written and not yet compressed.
    pending: Vec<u8>,
    /// Text compressed.
    compressed: usize,
    deflate: flate2::Compress,
    crc: flate2::Crc,
    gzip: Vec<u8>,
}

/// How much text is written before it is compressed: a few hundred samples.
pub const SPILL: usize = 64 * 1024;

impl Writer {
    /// A writer whose gzip is expected to come to about `gzip_len` bytes (the last one's).
    pub fn new(gzip_len: usize) -> Writer {
        let mut gzip = Vec::with_capacity(GZIP_HEADER.len() + gzip_len + gzip_len / 8 + 1024);
        gzip.extend_from_slice(&GZIP_HEADER);
        Writer {
            // Room for a sample beyond the spill, so that it rarely grows.
            pending: Vec::with_capacity(2 * SPILL),
            compressed: 0,
            deflate: flate2::Compress::new(flate2::Compression::fast(), false),
            crc: flate2::Crc::new(),
            gzip,
        }
    }

    fn compress_pending(&mut self, flush: flate2::FlushCompress) {
        self.crc.update(&self.pending);
        deflate(&mut self.deflate, &self.pending, flush, &mut self.gzip);
        self.compressed += self.pending.len();
        self.pending.clear();
    }

    /// The text written as the head, ended by a sync flush, then `tail` as the gzip's last
    /// blocks.
    pub fn finish(mut self, tail: &[u8]) -> Spliced {
        self.compress_pending(flate2::FlushCompress::Sync);
        let Writer {
            compressed,
            crc,
            mut gzip,
            ..
        } = self;
        let deflate_end = gzip.len();
        finish_gzip(&crc, tail, &mut gzip);
        Spliced {
            text_len: compressed + tail.len(),
            head_len: compressed,
            gzip: exact(gzip),
            deflate_end,
            crc,
        }
    }
}

impl TextOut for Writer {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    fn written(&self) -> usize {
        self.compressed + self.pending.len()
    }

    fn whole(&mut self) {
        if self.pending.len() >= SPILL {
            self.compress_pending(flate2::FlushCompress::None);
        }
    }
}

/// `gzip` as bytes that hold no more than its length: bytes made from a vector keep its whole
/// capacity, which the compressor's estimate and its doubling leave well above the length.
fn exact(mut gzip: Vec<u8>) -> Bytes {
    gzip.shrink_to_fit();
    gzip.into()
}

/// Appends `live` as the last deflate blocks, and the gzip trailer: the CRC of the whole
/// (`scan`'s combined with `live`'s) and its length.
fn finish_gzip(scan: &flate2::Crc, live: &[u8], gzip: &mut Vec<u8>) {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    deflate(&mut c, live, flate2::FlushCompress::Finish, gzip);
    let mut crc = flate2::Crc::new();
    crc.combine(scan);
    let mut live_crc = flate2::Crc::new();
    live_crc.update(live);
    crc.combine(&live_crc);
    gzip.extend_from_slice(&crc.sum().to_le_bytes());
    gzip.extend_from_slice(&crc.amount().to_le_bytes());
}

/// Appends `input` to `out` as raw deflate by `c`, then `flush`: `None` leaves what `c` holds
/// back for the next input, `Sync` leaves the stream open on a byte boundary, `Finish` closes
/// it with a final block.
fn deflate(
    c: &mut flate2::Compress,
    input: &[u8],
    flush: flate2::FlushCompress,
    out: &mut Vec<u8>,
) {
    let start = c.total_in();
    let consumed = |c: &flate2::Compress| (c.total_in() - start) as usize;
    out.reserve(64);
    loop {
        let status = c
            .compress_vec(&input[consumed(c)..], out, flush)
            .expect("deflate of a buffer cannot fail");
        let done = consumed(c) == input.len()
            && match flush {
                flate2::FlushCompress::None => true,
                flate2::FlushCompress::Finish => status == flate2::Status::StreamEnd,
                // A sync flush is complete once it left room in the output.
                _ => out.len() < out.capacity(),
            };
        if done {
            return;
        }
        out.reserve(out.capacity().max(1024));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut out).unwrap();
        out
    }

    /// The text as a plain scrape is sent it: chunks of at most `max` bytes, each checked.
    pub(crate) fn plain_in_chunks(e: &Exposition, max: usize) -> Vec<u8> {
        let mut plain = e.plain();
        let mut text = Vec::new();
        while let Some(chunk) = plain.next_chunk(max) {
            let chunk = chunk.unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= max, "{}", chunk.len());
            text.extend_from_slice(&chunk);
            assert_eq!(plain.remaining(), e.text_len() - text.len());
        }
        assert_eq!(text.len(), e.text_len());
        text
    }

    /// The scan's part compressed once, the live part after it: one gzip member that any
    /// decoder reads as the whole text, with the right CRC and length (GzDecoder checks both).
    #[test]
    fn the_live_part_follows_the_scan_part_in_one_gzip_member() {
        let scan: Vec<u8> = (0..50_000)
            .flat_map(|i| format!("scan_line {i}\n").into_bytes())
            .collect();
        let first = [&scan[..], b"live 0\n"].concat();
        let part = Spliced::new(&first, scan.len());
        assert_eq!(part.exposition().text(), first);
        assert_eq!(part.exposition().text_len(), first.len());
        assert_eq!(gunzip(part.exposition().gzip()), first);
        for live in [&b""[..], b"live 1\n", &[b'x'; 100_000]] {
            let e = part.with(live).exposition();
            let whole = [&scan[..], live].concat();
            assert_eq!(e.text(), whole);
            assert_eq!(e.text_len(), whole.len());
            assert_eq!(gunzip(e.gzip()), whole);
            assert_eq!(plain_in_chunks(&e, 64 * 1024), whole);
            // A single member: the decoder that stops at the first member reads it all too.
            let mut single = Vec::new();
            let mut d = flate2::bufread::GzDecoder::new(&e.gzip()[..]);
            std::io::Read::read_to_end(&mut d, &mut single).unwrap();
            assert_eq!(single, whole);
        }
        // Compressed once: the live part costs its own size, not the scan's.
        let small = part.with(b"live 1\n");
        assert!(small.gzip.len() < part.deflate_end + 64);
        // A sweep after a sweep keeps the scan's part and only it.
        let again = part.with(b"live 1\n").with(b"live 2\n").exposition();
        assert_eq!(gunzip(again.gzip()), [&scan[..], b"live 2\n"].concat());
        assert_eq!(again.text(), [&scan[..], b"live 2\n"].concat());
        let empty = Spliced::new(&[], 0).exposition();
        assert_eq!(gunzip(empty.gzip()), b"");
        assert_eq!(empty.text(), b"");
        assert_eq!(
            empty.plain().next_chunk(64 * 1024).map(|c| c.unwrap()),
            None
        );
    }

    /// The text comes in chunks of at most the size asked for, in order, and the last only
    /// once the gzip's CRC and length agree with it: a gzip that is not the text's ends in an
    /// error, not in a text that looks whole.
    /// The plain text is inflated once per exposition and shared: a clone of the exposition
    /// (each scrape holds one) gets the same allocation; a new exposition inflates its own.
    #[test]
    fn the_plain_text_is_inflated_once_per_exposition() {
        let e = Exposition::of_text(b"a 1\nb 2\n");
        let first = e.plain_text().unwrap();
        assert_eq!(&first[..], b"a 1\nb 2\n");
        let again = e.clone().plain_text().unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr(), "inflated twice");
        let other = Exposition::of_text(b"a 1\nb 2\n").plain_text().unwrap();
        assert_ne!(first.as_ptr(), other.as_ptr());
        assert_eq!(Exposition::of_text(b"").plain_text().unwrap(), Bytes::new());
    }

    #[test]
    fn the_text_is_inflated_a_chunk_at_a_time_and_checked_at_the_end() {
        let text: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("nsexporter_line{{inode=\"{i}\"}} {}\n", i % 7).into_bytes())
            .collect();
        let e = Exposition::of_text(&text);
        assert_eq!(e.text_len(), text.len());
        for max in [1000, 64 * 1024, text.len() - 1, text.len(), usize::MAX] {
            assert_eq!(plain_in_chunks(&e, max), text, "{max}");
        }
        let chunks = std::iter::from_fn({
            let mut plain = e.plain();
            move || plain.next_chunk(64 * 1024)
        });
        assert_eq!(chunks.count(), text.len().div_ceil(64 * 1024));
        // The CRC's first byte flipped, then the length's: every chunk but the last comes,
        // and then an error.
        for at in [8, 4] {
            let mut gzip = e.gzip().to_vec();
            let n = gzip.len();
            gzip[n - at] ^= 1;
            let bad = Exposition {
                gzip: gzip.into(),
                text_len: e.text_len(),
                text: Arc::default(),
            };
            assert_eq!(bad.plain_text(), None, "a bad trailer was not noticed");
            let mut plain = bad.plain();
            let mut got = Vec::new();
            let error = loop {
                match plain.next_chunk(64 * 1024) {
                    Some(Ok(chunk)) => got.extend_from_slice(&chunk),
                    Some(Err(e)) => break e,
                    None => panic!("a bad trailer was not noticed"),
                }
            };
            assert!(got.len() < text.len(), "{error}");
            assert!(plain.next_chunk(64 * 1024).is_none());
        }
    }
}
