//! The access log's writer thread: takes formatted lines from a bounded queue, writes them in
//! batches (one write and flush per batch), and for a file sink reopens the path on SIGHUP or
//! when the file was moved or removed (logrotate), appending to what is there.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

/// Lines written per batch at most.
const BATCH: usize = 16 * 1024;
/// After a write the writer sleeps this long, so under load lines pile up in the queue and the
/// request path never wakes the writer (a wake-up, and on a busy core a context switch, per
/// request costs more than formatting the line); at most 50 writes a second.
const TICK: Duration = Duration::from_millis(20);
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

/// Runs the writer until every sender is gone. `reopen` is raised by SIGHUP.
pub fn run(mut output: Output, rx: Receiver<Vec<u8>>, reopen: Arc<AtomicBool>) {
    let mut last_check = Instant::now();
    let mut failed = false;
    loop {
        let mut batch = Vec::new();
        match rx.recv_timeout(CHECK_EVERY) {
            Ok(line) => {
                batch.push(line);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(line) => batch.push(line),
                        Err(_) => break,
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Output::File(f) = &mut output {
            let hup = reopen.swap(false, Ordering::Relaxed);
            if hup || (last_check.elapsed() >= CHECK_EVERY && f.moved()) {
                f.reopen();
            }
            if last_check.elapsed() >= CHECK_EVERY {
                last_check = Instant::now();
            }
        }
        if batch.is_empty() {
            continue;
        }
        match write_batch(&mut output, &batch) {
            Ok(()) => failed = false,
            Err(e) if !failed => {
                failed = true;
                warn!(error = %e, "cannot write the access log");
            }
            Err(_) => {}
        }
        std::thread::sleep(TICK);
    }
    let _ = write_batch(&mut output, &[]);
}

fn write_batch(output: &mut Output, batch: &[Vec<u8>]) -> io::Result<()> {
    fn all(w: &mut impl Write, batch: &[Vec<u8>]) -> io::Result<()> {
        for line in batch {
            w.write_all(line)?;
        }
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
    use std::sync::mpsc::sync_channel;

    #[test]
    fn writes_lines_and_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (tx, rx) = sync_channel(16);
        let reopen = Arc::new(AtomicBool::new(false));
        let flag = reopen.clone();
        let sink = FileSink::open(&path).unwrap();
        let writer = std::thread::spawn(move || run(Output::File(sink), rx, flag));
        tx.send(b"one\n".to_vec()).unwrap();
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
        tx.send(b"two\n".to_vec()).unwrap();
        wait_for(&path, "two\n");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\n");
        // Moved without a signal: noticed within a second or two.
        std::fs::rename(&path, dir.path().join("access.log.2")).unwrap();
        std::thread::sleep(CHECK_EVERY + Duration::from_millis(100));
        for _ in 0..30 {
            tx.send(b"three\n".to_vec()).unwrap();
            if std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with("three\n")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("three\n"));
        drop(tx);
        writer.join().unwrap();
    }
}
