//! The access log's writer thread: every tick it swaps out the bytes the requests appended to
//! the shared [`LineQueue`] and writes them in one go, and for a file sink reopens the path on
//! SIGHUP or when the file was moved or removed (logrotate), appending to what is there.
//! Requests only copy a formatted line into the queue under a short lock: no allocation per
//! line, no wake-up of the writer, no memory freed across threads.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::warn;

/// Bytes the queue holds at most; lines beyond are dropped (and counted by the caller).
const MAX_QUEUED: usize = 16 * 1024 * 1024;
/// How often the writer takes what the requests queued: at most 50 writes a second, and the
/// request path never wakes it (a wake-up, and on a busy core a context switch, per request
/// costs more than formatting the line).
const TICK: Duration = Duration::from_millis(20);

/// Formatted lines waiting for the writer, as one byte buffer.
#[derive(Debug)]
pub struct LineQueue {
    bytes: Mutex<Vec<u8>>,
    max: usize,
    closed: AtomicBool,
}

impl Default for LineQueue {
    fn default() -> Self {
        LineQueue::new(MAX_QUEUED)
    }
}

impl LineQueue {
    /// A queue holding at most `max` bytes.
    pub fn new(max: usize) -> Self {
        LineQueue {
            bytes: Mutex::new(Vec::new()),
            max,
            closed: AtomicBool::new(false),
        }
    }

    /// Appends one line (with its newline); false when the queue is full.
    pub fn push(&self, line: &[u8]) -> bool {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        if bytes.len() + line.len() > self.max {
            return false;
        }
        bytes.extend_from_slice(line);
        true
    }

    /// Swaps the queued bytes into `spare` (which must be empty).
    fn take(&self, spare: &mut Vec<u8>) {
        let mut bytes = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *bytes, spare);
    }

    /// No more lines will come: the writer flushes what is queued and stops.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}
/// How often an idle writer checks whether the file was moved.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Where the lines go.
pub enum Output {
    Stdout,
    Stderr,
    File(FileSink),
}

/// An append-mode file that can be reopened by path.
pub struct FileSink {
    path: PathBuf,
    file: BufWriter<File>,
    /// Device and inode of the open file, to notice a rename.
    id: Option<(u64, u64)>,
}

impl FileSink {
    pub fn open(path: &Path) -> io::Result<FileSink> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let id = file_id(&file.metadata()?);
        Ok(FileSink {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(64 * 1024, file),
            id,
        })
    }

    /// Whether the path no longer names the open file (moved, removed or replaced).
    fn moved(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(m) => file_id(&m) != self.id,
            Err(_) => true,
        }
    }

    fn reopen(&mut self) {
        let _ = self.file.flush();
        match FileSink::open(&self.path) {
            Ok(fresh) => *self = fresh,
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot reopen the access log; still writing to the old file")
            }
        }
    }
}

#[cfg(unix)]
fn file_id(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Runs the writer until the queue is closed. `reopen` is raised by SIGHUP.
pub fn run(mut output: Output, queue: Arc<LineQueue>, reopen: Arc<AtomicBool>) {
    let mut last_check = Instant::now();
    let mut failed = false;
    let mut batch = Vec::new();
    loop {
        let closing = queue.closed.load(Ordering::Relaxed);
        queue.take(&mut batch);
        if let Output::File(f) = &mut output {
            let hup = reopen.swap(false, Ordering::Relaxed);
            if hup || (last_check.elapsed() >= CHECK_EVERY && f.moved()) {
                f.reopen();
            }
            if last_check.elapsed() >= CHECK_EVERY {
                last_check = Instant::now();
            }
        }
        if !batch.is_empty() {
            match write_batch(&mut output, &batch) {
                Ok(()) => failed = false,
                Err(e) if !failed => {
                    failed = true;
                    warn!(error = %e, "cannot write the access log");
                }
                Err(_) => {}
            }
            batch.clear();
        }
        if closing {
            return;
        }
        std::thread::sleep(TICK);
    }
}

fn write_batch(output: &mut Output, batch: &[u8]) -> io::Result<()> {
    fn all(w: &mut impl Write, batch: &[u8]) -> io::Result<()> {
        w.write_all(batch)?;
        w.flush()
    }
    match output {
        Output::Stdout => all(&mut io::stdout().lock(), batch),
        Output::Stderr => all(&mut io::stderr().lock(), batch),
        Output::File(f) => all(&mut f.file, batch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_lines_and_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let queue = Arc::new(LineQueue::default());
        let tx = queue.clone();
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        let sink = FileSink::open(&path).unwrap();
        let writer = std::thread::spawn(move || run(Output::File(sink), queue, flag));
        assert!(tx.push(b"one\n"));
        let wait_for = |p: &Path, want: &str| {
            for _ in 0..200 {
                if std::fs::read_to_string(p).unwrap_or_default() == want {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("{} never held {want:?}", p.display());
        };
        wait_for(&path, "one\n");
        // logrotate: move the file, then SIGHUP (here: the flag) -> a fresh file at the path.
        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        reopen.store(true, Ordering::Relaxed);
        assert!(tx.push(b"two\n"));
        wait_for(&path, "two\n");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\n");
        // Moved without a signal: noticed within a second or two.
        std::fs::rename(&path, dir.path().join("access.log.2")).unwrap();
        std::thread::sleep(CHECK_EVERY + Duration::from_millis(100));
        for _ in 0..30 {
            assert!(tx.push(b"three\n"));
            if std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with("three\n")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("three\n"));
        tx.close();
        writer.join().unwrap();
    }
}
