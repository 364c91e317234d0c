//! The capture route, for development and tests: each message becomes
//! `<queue id>.eml` in a folder, with its envelope in `<queue id>.json`.
//! The `.eml` appears atomically (written, synced, renamed) after its synced
//! sidecar, and a redelivery after a crash rewrites the same names, so a
//! message is captured exactly once.

use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_core::QueuedMessage;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct CaptureRoute {
    dir: PathBuf,
}

#[derive(Serialize)]
struct Sidecar<'a> {
    queue_id: &'a str,
    tenant: &'a str,
    app: &'a str,
    mail_from: &'a str,
    recipients: &'a [String],
    received_ms: u64,
}

impl CaptureRoute {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(CaptureRoute { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the sidecar first and the `.eml` last: a reader that sees the
    /// `.eml` finds its envelope beside it.
    pub fn deliver(&self, message: &QueuedMessage) -> std::io::Result<()> {
        let id = message.id.as_str();
        let sidecar = Sidecar {
            queue_id: id,
            tenant: &message.tenant,
            app: &message.app,
            mail_from: &message.mail_from,
            recipients: &message.recipients,
            received_ms: message.received_ms,
        };
        let json = serde_json::to_vec_pretty(&sidecar).map_err(std::io::Error::other)?;
        // The sidecar needs no rename of its own: the `.eml` is what readers
        // look for, and it appears only once the sidecar is synced. A crash
        // in between leaves a lone sidecar that the redelivery overwrites.
        write_synced(&self.dir.join(format!("{id}.json")), &json)?;
        let tmp = self.dir.join(format!(".{id}.eml.tmp"));
        write_synced(&tmp, &message.content)?;
        std::fs::rename(&tmp, self.dir.join(format!("{id}.eml")))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}
