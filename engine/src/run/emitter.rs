//! The run's events: written to the journal (by a thread of its own) and sent to the
//! reporters, with secrets masked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::event::{Body, Event};
use crate::journal::Journal;

/// Writes events to the journal and to the reporters. The journal is written (and fsynced at
/// step boundaries) by a thread of its own, so no task of the async runtime waits on the disk.
/// The first write error is kept; the run stops on it.
pub(crate) struct Emitter {
    run: String,
    /// Values masked in every event (longest first).
    secrets: Vec<String>,
    journal: Mutex<Option<std::sync::mpsc::Sender<Event>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    sender: mpsc::UnboundedSender<Event>,
    error: Arc<Mutex<Option<std::io::Error>>>,
    /// Each step's last `attempt_failed` message: a step that ends with that same failure says
    /// only its first line (the tail it carries is stored once, in the attempt's event).
    last_failure: Mutex<HashMap<String, String>>,
}

impl Emitter {
    pub(crate) fn new(
        run: &str,
        secrets: Vec<String>,
        mut journal: Journal,
        sender: mpsc::UnboundedSender<Event>,
    ) -> std::io::Result<Emitter> {
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let error: Arc<Mutex<Option<std::io::Error>>> = Arc::new(Mutex::new(None));
        let slot = error.clone();
        let writer = std::thread::Builder::new()
            .name("medley-journal".to_owned())
            .spawn(move || {
                // What queued up while the last batch was written goes in one write and at
                // most one flush.
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    if let (Err(e), Ok(mut slot)) = (journal.append_all(&batch), slot.lock()) {
                        slot.get_or_insert(e);
                    }
                }
            })?;
        Ok(Emitter {
            run: run.to_owned(),
            secrets,
            journal: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            sender,
            error,
            last_failure: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn emit(&self, mut body: Body) {
        if let Ok(mut last) = self.last_failure.lock() {
            match &mut body {
                Body::AttemptFailed { step, message, .. } => {
                    last.insert(step.clone(), message.clone());
                }
                Body::StepFinished {
                    step,
                    error: Some(error),
                    ..
                } if last.get(step.as_str()) == Some(&error.message) => {
                    let headline = error.message.lines().next().unwrap_or("");
                    error.message = headline.trim_end_matches(':').to_owned();
                }
                _ => {}
            }
        }
        let event = crate::secrets::mask_event(Event::new(&self.run, body), &self.secrets);
        let queued = match self.journal.lock() {
            Ok(journal) => journal
                .as_ref()
                .is_some_and(|tx| tx.send(event.clone()).is_ok()),
            Err(_) => false,
        };
        if !queued && let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(std::io::Error::other("the journal's writer has stopped"));
        }
        let _ = self.sender.send(event);
    }

    /// A warning for the user, in the event stream.
    pub(crate) fn warn(&self, step: Option<&str>, message: String) {
        self.emit(Body::Warning {
            step: step.map(str::to_owned),
            message,
        });
    }

    /// Whether writing the journal has failed.
    pub(crate) fn failed(&self) -> bool {
        self.error.lock().map(|e| e.is_some()).unwrap_or(true)
    }

    /// Waits until every event emitted so far is in the journal (blocking: call it off the
    /// async runtime); later events are not written.
    pub(crate) fn close(&self) {
        if let Ok(mut journal) = self.journal.lock() {
            journal.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer
            && writer.join().is_err()
            && let Ok(mut slot) = self.error.lock()
        {
            slot.get_or_insert(std::io::Error::other("the journal's writer panicked"));
        }
    }

    pub(crate) fn take_error(&self) -> Option<std::io::Error> {
        self.error.lock().ok()?.take()
    }
}
