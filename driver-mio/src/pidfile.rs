//! The pid file: where `kill -USR2 $(cat PATH)` finds the serving process.
//!
//! It is written whole or not at all (a temporary file beside it, then a
//! rename), so a reader never sees it half-written. The serving process
//! writes it once its workers poll the listeners; a successor rewrites it
//! the same way when it is ready, so it always names the process that
//! serves. A process removes it at exit only if it still names that process.

use std::io::{self, Write};
use std::path::PathBuf;

/// A pid file at a path.
#[derive(Clone, Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub(crate) fn new(path: PathBuf) -> PidFile {
        PidFile { path }
    }

    /// Whether it can be written, found before serving by writing the
    /// temporary file a write starts with (then removing it): a pid file
    /// that cannot be written is a mistake to report at start, not once
    /// `kill -USR2 $(cat PATH)` finds nothing.
    ///
    /// Warns if it names a running process other than this one's parent (the
    /// server this one upgrades): two servers sharing one pid file would
    /// take it from each other.
    pub(crate) fn check(&self) -> io::Result<()> {
        if let Some(pid) = self.read().filter(|&pid| is_running(pid)) {
            if pid != std::os::unix::process::parent_id() && pid != std::process::id() {
                log::warn!(
                    "pid file {} names process {pid}, which is running: this process takes it over",
                    self.path.display()
                );
            }
        }
        let temporary = self.temporary();
        let created = std::fs::File::create(&temporary).map(drop);
        let _ = std::fs::remove_file(&temporary);
        created.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot write the pid file {}: {e}", self.path.display()),
            )
        })
    }

    /// The file a write fills before renaming it to the pid file.
    fn temporary(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{}.tmp", std::process::id()));
        self.path.with_file_name(name)
    }

    /// Writes `pid` atomically.
    pub(crate) fn write(&self, pid: u32) -> io::Result<()> {
        let temporary = self.temporary();
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(format!("{pid}\n").as_bytes())?;
            // No fsync: a pid file means nothing after a crash (it usually
            // lives in /run), and on a busy disk an fsync can take seconds
            // a successor's readiness would wait for.
            std::fs::rename(&temporary, &self.path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }

    /// The pid it names, if it can be read.
    pub(crate) fn read(&self) -> Option<u32> {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// Writes `pid` and logs a failure: a missing pid file must not stop
    /// the server.
    pub(crate) fn write_or_log(&self, pid: u32) {
        match self.write(pid) {
            Ok(()) => log::debug!("pid file {}: {pid}", self.path.display()),
            Err(e) => log::error!("cannot write the pid file {}: {e}", self.path.display()),
        }
    }

    /// Removes the file if it names `pid` (a successor may have taken it).
    pub(crate) fn remove_if_names(&self, pid: u32) {
        if self.read() == Some(pid) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove the pid file {}: {e}", self.path.display());
            }
        }
    }
}

/// Whether a process with this pid exists (one this process may not signal
/// exists too).
fn is_running(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_then_read_then_removed_only_by_its_pid() {
        let dir = std::env::temp_dir().join(format!("ebb-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = PidFile::new(dir.join("ebb.pid"));
        file.write(42).unwrap();
        assert_eq!(std::fs::read_to_string(&file.path).unwrap(), "42\n");
        file.write(43).unwrap();
        assert_eq!(file.read(), Some(43));
        file.remove_if_names(42);
        assert_eq!(file.read(), Some(43), "kept: it names another process");
        file.remove_if_names(43);
        assert!(!file.path.exists());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_running_process_is_told_from_a_pid_no_process_has() {
        assert!(is_running(std::process::id()));
        assert!(
            is_running(1),
            "init: running, whether this process may signal it or not"
        );
        assert!(!is_running(u32::MAX), "not a pid");
        // pid_max is at most 2^22 on Linux.
        assert!(!is_running(1 << 23));
    }

    #[test]
    fn a_pid_file_that_cannot_be_written_fails_the_check() {
        let dir = std::env::temp_dir().join(format!("ebb-pidfile-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = PidFile::new(dir.join("ebb.pid"));
        file.check().unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left");
        let missing = PidFile::new(dir.join("no-such-dir").join("ebb.pid"));
        let e = missing.check().unwrap_err();
        assert!(e.to_string().contains("no-such-dir"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
