//! A model file that shrinks under a running `hearth` (a re-download over
//! it, `truncate`) turns the next touch of its mapped pages into SIGBUS.
//! Without a handler the process dies by signal 7 and every client of
//! `hearth serve` is cut off without a word. [`guard`] installs a handler
//! that, for a fault inside the model's mapping, writes one line naming the
//! file and exits with [`EXIT_CODE`] (74, `EX_IOERR` of sysexits.h); a fault
//! anywhere else gets the default action, as before. `--no-mmap` avoids the
//! fault altogether: the weights are then read into memory we own.

use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The exit status after the model file changed under us: `EX_IOERR`.
pub const EXIT_CODE: i32 = 74;

// What the handler reads. Written once, before the handler is installed
// (SeqCst stores, then `sigaction`); read with atomic loads only, which are
// async-signal-safe.
static MSG: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static MSG_LEN: AtomicUsize = AtomicUsize::new(0);
static START: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);

/// Watches `mapping`, the mapped bytes of the model file at `path`: a SIGBUS
/// inside it prints "hearth: model file PATH changed or was truncated while
/// in use" and exits with [`EXIT_CODE`]. Call it once the model is loaded.
pub fn guard(path: &Path, mapping: &[u8]) -> std::io::Result<()> {
    let msg = format!(
        "\nhearth: model file {} changed or was truncated while in use (SIGBUS reading its mapping); \
         exiting with code {EXIT_CODE}. Replace a model file by renaming a new one over it, \
         or run with --no-mmap\n",
        path.display()
    );
    // The message lives until the process ends; the handler may read it at
    // any time.
    let msg: &'static [u8] = Box::leak(msg.into_bytes().into_boxed_slice());
    MSG_LEN.store(msg.len(), Ordering::SeqCst);
    MSG.store(msg.as_ptr().cast_mut(), Ordering::SeqCst);
    let start = mapping.as_ptr() as usize;
    START.store(start, Ordering::SeqCst);
    END.store(start + mapping.len(), Ordering::SeqCst);

    // SAFETY: a zeroed `sigaction` is a valid value of the C struct (no
    // flags, empty mask) that we then fill in; `sigemptyset` gets a valid
    // pointer to its mask. The handler only does async-signal-safe work
    // (atomic loads, write(2), sigaction(2), _exit(2)).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO
    // handler; for SIGBUS `si_addr` is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    let (start, end) = (START.load(Ordering::SeqCst), END.load(Ordering::SeqCst));
    if (start..end).contains(&addr) {
        let msg = MSG.load(Ordering::SeqCst);
        let len = MSG_LEN.load(Ordering::SeqCst);
        // SAFETY: `msg`/`len` describe the leaked message set before the
        // handler was installed; write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(libc::STDERR_FILENO, msg.cast(), len);
            libc::_exit(EXIT_CODE);
        }
    }
    // Not the model's mapping: restore the default action and return, so the
    // faulting instruction runs again and the process dies by SIGBUS as it
    // would have without us.
    // SAFETY: a zeroed `sigaction` with SIG_DFL (0) as handler is valid.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}
