//! Where a command's output goes: this process's stdout and stderr, or —
//! when a running relay runs the command for a CLI that asked it through
//! the admin API — a buffer sent back whole. The buffer is scoped to the
//! command's task, so commands print the same way in both cases.

use std::cell::RefCell;

/// What a captured command printed.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
}

tokio::task_local! {
    static CAPTURE: RefCell<Captured>;
}

/// Runs `command` with its output captured.
pub async fn capture<T>(command: impl Future<Output = T>) -> (T, Captured) {
    CAPTURE
        .scope(RefCell::new(Captured::default()), async move {
            let result = command.await;
            let captured = CAPTURE.with(|c| c.take());
            (result, captured)
        })
        .await
}

/// Writes `text` (no newline added) to the command's stdout.
pub fn out(text: &str) {
    if CAPTURE.try_with(|c| c.borrow_mut().stdout.push_str(text)).is_err() {
        print!("{text}");
    }
}

/// Writes `text` to the command's stderr.
pub fn err(text: &str) {
    if CAPTURE.try_with(|c| c.borrow_mut().stderr.push_str(text)).is_err() {
        eprint!("{text}");
    }
}

/// `println!` for commands.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        $crate::console::out(&line);
    }};
}

/// `print!` for commands.
macro_rules! say_raw {
    ($($arg:tt)*) => {
        $crate::console::out(&format!($($arg)*))
    };
}

/// `eprintln!` for commands.
macro_rules! warn_line {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        $crate::console::err(&line);
    }};
}

pub(crate) use {say, say_raw, warn_line};
