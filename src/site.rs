//! What the web layer serves for this exporter ([`nsexporter_web::http::Site`]): the exposition
//! the scan loop published last, the health probes' answers from [`Health`], and the landing
//! page. The web layer knows nothing of scans; this is where the two meet.

use std::sync::Arc;

use bytes::Bytes;
use nsexporter_web::http::{Chunks, Metrics, Payload, Site};
use tokio::sync::watch;

use crate::health::Health;
use crate::metrics::{CONTENT_TYPE, Exposition, Plain};

/// The exporter's site: what the scan loop publishes and how it is doing.
pub struct ExporterSite {
    published: watch::Receiver<Option<Arc<Exposition>>>,
    health: Arc<Health>,
    landing_page: Bytes,
}

impl ExporterSite {
    /// The site of a scan loop that publishes to `published` and stamps `health`, with its
    /// metrics at `telemetry_path` (named on the landing page).
    pub fn new(
        telemetry_path: &str,
        published: watch::Receiver<Option<Arc<Exposition>>>,
        health: Arc<Health>,
    ) -> ExporterSite {
        let landing_page = format!(
            "<!DOCTYPE html>\n<html><head><title>nsexporter</title></head><body>\n\
<h1>nsexporter</h1>\n<p>Linux namespaces as Prometheus metrics.</p>\n\
<ul><li><a href=\"{0}\">{0}</a></li><li><a href=\"/healthz\">/healthz</a></li>\
<li><a href=\"/readyz\">/readyz</a></li></ul>\n</body></html>\n",
            telemetry_path
        );
        ExporterSite {
            published,
            health,
            landing_page: landing_page.into(),
        }
    }
}

impl Site for ExporterSite {
    /// The gzip encoded after the last scan, or its text, inflated once for every plain scrape
    /// of this exposition (up to [`Exposition::SHARED_TEXT_MAX`]; a longer one inflated as it
    /// is sent): a scrape never triggers or waits for a scan. Where the text does not inflate
    /// (a bug), it is sent as it inflates, so that the client sees the error.
    fn metrics(&self, gzip: bool) -> Result<Metrics, String> {
        let published = self.published.borrow().clone();
        let exposition = published.ok_or("no scan has completed yet")?;
        let body = if gzip {
            Payload::Bytes(exposition.gzip().clone())
        } else if let Some(text) = (exposition.text_len() <= Exposition::SHARED_TEXT_MAX)
            .then(|| exposition.plain_text())
            .flatten()
        {
            Payload::Bytes(text)
        } else {
            Payload::Chunks(Box::new(exposition.plain()))
        };
        Ok(Metrics {
            content_type: CONTENT_TYPE,
            body,
        })
    }

    fn healthy(&self) -> Result<(), String> {
        self.health.check().map_err(|e| e.to_string())
    }

    fn ready(&self) -> Result<(), String> {
        match self.health.ready() {
            true => Ok(()),
            false => Err("no scan has succeeded yet".into()),
        }
    }

    fn landing_page(&self) -> Bytes {
        self.landing_page.clone()
    }
}

/// A plain scrape holds an inflate state and a reference to the gzip, never a copy of the text.
impl Chunks for Plain {
    fn next_chunk(&mut self, max: usize) -> Option<std::io::Result<Bytes>> {
        Plain::next_chunk(self, max)
    }

    fn remaining(&self) -> usize {
        Plain::remaining(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI32;
    use std::time::Duration;

    use super::*;

    /// A site with no exposition yet and no scan yet, and the sender that publishes to it.
    fn site() -> (ExporterSite, watch::Sender<Option<Arc<Exposition>>>) {
        let (publish, published) = watch::channel(None);
        let health = Health::new(Duration::from_secs(15), Arc::new(AtomicI32::new(0)));
        (
            ExporterSite::new("/metrics", published, Arc::new(health)),
            publish,
        )
    }

    /// A payload's bytes, a chunk of at most 64 KiB at a time, as the web layer takes them.
    fn bytes(payload: Payload) -> Vec<u8> {
        match payload {
            Payload::Bytes(b) => b.to_vec(),
            Payload::Chunks(mut c) => {
                let length = c.remaining();
                let mut text = Vec::new();
                while let Some(chunk) = c.next_chunk(64 * 1024) {
                    text.extend_from_slice(&chunk.unwrap());
                    assert_eq!(c.remaining(), length - text.len());
                }
                assert_eq!(text.len(), length, "the length given first");
                text
            }
        }
    }

    /// A plain scrape of a text the kernel's send buffer takes whole shares the text inflated
    /// once for its exposition; of a longer one, inflates it as it is sent (slow clients then
    /// pin no text). Both bodies are the text.
    #[test]
    fn a_plain_scrape_shares_a_text_up_to_the_send_buffer_and_inflates_a_longer_one() {
        let (site, publish) = site();
        let line = b"nsexporter_x{inode=\"4026531840\"} 1\n";
        for (n, shared) in [
            (1000, true),
            (Exposition::SHARED_TEXT_MAX / line.len() + 1, false),
        ] {
            let text = line.repeat(n);
            publish.send_replace(Some(Arc::new(Exposition::of_text(&text))));
            let first = site.metrics(false).unwrap().body;
            let second = site.metrics(false).unwrap().body;
            match (first, second) {
                (Payload::Bytes(a), Payload::Bytes(b)) if shared => {
                    assert_eq!(a.as_ptr(), b.as_ptr(), "inflated twice");
                    assert_eq!(a, text);
                }
                (a @ Payload::Chunks(_), Payload::Chunks(_)) if !shared => {
                    assert_eq!(bytes(a), text);
                }
                _ => panic!("{n} lines: shared {shared}, served otherwise"),
            }
        }
    }

    /// What is served, plain and gzipped, is one exposition: after the fixture's scan, after
    /// a sweep (the scan's deflate copied, the live families added), after a failed scan (the
    /// last good scan's series copied from its text, inflated for them).
    #[test]
    fn the_plain_body_is_the_gzip_body_inflated_after_a_scan_a_sweep_and_a_failed_scan() {
        use crate::metrics::scenario::Scans;
        use crate::metrics::{BetweenScans, Metrics, Outcome, PerNamespace};
        let (site, publish) = site();
        let procfs = crate::procfs::ProcFs::new("/proc");
        let mut m = Metrics::new(procfs, Duration::from_secs(15), PerNamespace::All, 0);
        m.record(Outcome::Started {
            mode: crate::scan::refresh::ScanMode::Polling,
            cgroup_layout: crate::model::CgroupLayout::Unified,
            between: BetweenScans {
                sweeps: true,
                ..BetweenScans::default()
            },
        });
        let mut scans = Scans::new();
        let served = |what: &str, e: Exposition| -> String {
            publish.send_replace(Some(Arc::new(e)));
            let plain = bytes(site.metrics(false).unwrap().body);
            let gz = bytes(site.metrics(true).unwrap().body);
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut inflated)
                .unwrap();
            assert_eq!(
                plain, inflated,
                "{what}: the plain body is the gzip body inflated"
            );
            String::from_utf8(plain).unwrap()
        };
        scans.record(&mut m, 100_000, &[], &[], &[]);
        let scanned = served("a scan", m.exposition());
        m.record(Outcome::Sweep {
            processes: 2,
            rechecked: 1,
            new_findings: &[],
        });
        let swept = served("a sweep", m.exposition());
        assert!(swept.contains("nsexporter_sweeps_total 1"), "{swept}");
        m.record(Outcome::ScanFailed(crate::scan::FailureReason::ALL[0]));
        let failed = served("a failed scan", m.exposition());
        assert!(failed.contains("nsexporter_scan_success 0"), "{failed}");
        // The last good scan's per-namespace series, as they were.
        let per_namespace = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.starts_with("nsexporter_namespace_info{"))
                .map(str::to_owned)
                .collect()
        };
        assert!(!per_namespace(&scanned).is_empty(), "{scanned}");
        assert_eq!(per_namespace(&failed), per_namespace(&scanned));
    }

    #[test]
    fn metrics_wait_for_the_first_published_exposition() {
        let (site, publish) = site();
        assert_eq!(
            site.metrics(false).err().as_deref(),
            Some("no scan has completed yet")
        );
        let e = Arc::new(Exposition::of_text(b"nsexporter_up 1\n"));
        publish.send_replace(Some(Arc::clone(&e)));
        let plain = site.metrics(false).unwrap();
        assert_eq!(plain.content_type, CONTENT_TYPE);
        assert_eq!(bytes(plain.body), e.text());
        assert_eq!(bytes(site.metrics(true).unwrap().body), e.gzip().to_vec());
    }

    #[test]
    fn healthz_and_readyz_follow_the_scan_loop() {
        let (site, _publish) = site();
        // Within the deadline of the start, healthy; not ready before a scan has succeeded.
        assert_eq!(site.healthy(), Ok(()));
        assert_eq!(site.ready(), Err("no scan has succeeded yet".into()));
        site.health.scan_started();
        site.health
            .scan_finished(Err("cannot list the procfs".into()));
        assert!(site.ready().is_err());
        site.health.scan_started();
        site.health.scan_finished(Ok(()));
        assert_eq!((site.healthy(), site.ready()), (Ok(()), Ok(())));
        // Ready stays true once a scan has succeeded; healthy does not.
        site.health.stopped();
        assert_eq!(site.healthy(), Err("the scan loop has stopped".into()));
        assert_eq!(site.ready(), Ok(()));
    }

    #[test]
    fn the_landing_page_links_the_telemetry_path_and_the_probes() {
        let (_, published) = watch::channel(None);
        let health = Arc::new(Health::new(Duration::from_secs(15), Arc::default()));
        let site = ExporterSite::new("/custom/path", published, health);
        let html = String::from_utf8(site.landing_page().to_vec()).unwrap();
        for link in ["/custom/path", "/healthz", "/readyz"] {
            assert!(
                html.contains(&format!("<a href=\"{link}\">{link}</a>")),
                "{html}"
            );
        }
    }
}
