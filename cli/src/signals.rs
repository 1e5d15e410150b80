//! Stop signals, handled in one place: the first Ctrl-C, SIGTERM or SIGHUP (a closed terminal)
//! asks the run to stop, in stages; later ones are swallowed so medley is not killed mid-stop.

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Turns `cancel` true on the first stop signal, and keeps the handlers installed after it.
/// Abort the task once the run has ended.
pub fn forward_to(cancel: watch::Sender<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        let _ = cancel.send(true);
        // Keep the handlers installed so a second signal does not kill medley mid-stop.
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        }
    })
}
