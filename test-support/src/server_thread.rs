//! A tokio runtime on its own OS thread, so a fixture can be torn down completely.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long the teardown waits for worker threads; dropping tasks is immediate, so this only
/// bounds a pathological case.
const TEARDOWN_GRACE: Duration = Duration::from_secs(2);

/// Owns a single-worker runtime running on a dedicated thread.
///
/// Stopping it drops every task spawned on it: listeners close and every open connection is cut
/// at once. That is what a real relay crash looks like to a client, and it is the reason this
/// exists: `LocalRelay::shutdown()` misses busy connection tasks (deps-spike §5).
#[derive(Debug)]
pub(crate) struct ServerThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    pub(crate) fn start(name: &str) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("{name}-worker"))
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Either an explicit stop or the owner being dropped ends the wait.
                let _ = runtime.block_on(stopped);
                runtime.shutdown_timeout(TEARDOWN_GRACE);
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Drops every task on the runtime and returns once its thread has exited.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}
