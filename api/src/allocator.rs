//! The global allocator: mimalloc, asked for a plain block whenever the
//! alignment wanted is one every mimalloc block already has; and SQLite's,
//! the same mimalloc.
//!
//! The `mimalloc` crate passes every request to `mi_malloc_aligned`. For a
//! block size that is not a power of two, mimalloc serves that from its
//! over-allocating path (a larger block, and a page marked as holding
//! interior pointers, which its frees then look up) whenever the size's free
//! list runs empty, and every time for requests over 1 KiB. On a page of
//! repair orders that was 541 of the 1,953 allocations a request made, and a
//! quarter of the server's instructions went to the allocator.

use std::{
    alloc::{GlobalAlloc, Layout},
    ffi::{c_int, c_void},
};

use libmimalloc_sys as ffi;
use libsqlite3_sys as sqlite;

/// mimalloc's blocks are whole words from word-aligned pages, so any
/// alignment up to a word holds for every block it hands out.
const WORD: usize = std::mem::size_of::<usize>();

pub struct Mimalloc;

// SAFETY: each method passes the layout's size, and its alignment where a
// block's own would not do, to the matching mimalloc call, which returns
// null when it cannot serve it; every block, however obtained, is freed by
// `mi_free`.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for the impl.
        unsafe { new_block(layout, ffi::mi_malloc, ffi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for the impl.
        unsafe { new_block(layout, ffi::mi_zalloc, ffi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the new block
        // keeps its alignment.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                ffi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

/// A block for `layout` from `plain` when a word's alignment will do, from
/// `aligned` otherwise.
///
/// # Safety
/// `plain` and `aligned` must be mimalloc's matching allocation calls.
#[inline]
unsafe fn new_block(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: the caller passes mimalloc's calls, which take any size and
    // power-of-two alignment and return null when they cannot serve it.
    unsafe {
        if layout.align() <= WORD { plain(layout.size()).cast() } else { aligned(layout.size(), layout.align()).cast() }
    }
}

/// Routes SQLite's own allocations to mimalloc, as Rust's are, and turns off
/// the memory statistics SQLite keeps by default, which take a process-wide
/// mutex around every allocation and free it makes. SQLite accepts both only
/// before it starts; one that has started keeps its defaults.
///
/// # Safety
/// No other thread may call SQLite meanwhile: its configuration is not
/// guarded, so call this at the start of the process.
pub unsafe fn route_sqlite_allocations() {
    let methods = sqlite::sqlite3_mem_methods {
        xMalloc: Some(sqlite_malloc),
        xFree: Some(ffi::mi_free),
        xRealloc: Some(sqlite_realloc),
        xSize: Some(sqlite_size),
        xRoundup: Some(sqlite_roundup),
        xInit: Some(sqlite_init),
        xShutdown: Some(sqlite_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: the caller keeps other threads out of SQLite, SQLite copies
    // `methods` before returning, and each option is given the argument type
    // it reads.
    let (statistics, allocator) = unsafe {
        (
            sqlite::sqlite3_config(sqlite::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
            sqlite::sqlite3_config(sqlite::SQLITE_CONFIG_MALLOC, &raw const methods),
        )
    };
    if statistics != sqlite::SQLITE_OK || allocator != sqlite::SQLITE_OK {
        tracing::warn!(statistics, allocator, "SQLite had started already and keeps its own allocator");
    }
}

// SQLite asks for sizes as C ints it has checked to be positive.
unsafe extern "C" fn sqlite_malloc(size: c_int) -> *mut c_void {
    // SAFETY: mimalloc serves any size, or returns null.
    unsafe { ffi::mi_malloc(size as usize) }
}

unsafe extern "C" fn sqlite_realloc(block: *mut c_void, size: c_int) -> *mut c_void {
    // SAFETY: SQLite passes a block from `sqlite_malloc` or this.
    unsafe { ffi::mi_realloc(block, size as usize) }
}

// A block's usable size may exceed what SQLite asked for, which it may use;
// saying less than the block holds is always safe.
unsafe extern "C" fn sqlite_size(block: *mut c_void) -> c_int {
    // SAFETY: as for `sqlite_realloc`.
    c_int::try_from(unsafe { ffi::mi_usable_size(block) }).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn sqlite_roundup(size: c_int) -> c_int {
    // SAFETY: a pure computation on the size.
    c_int::try_from(unsafe { ffi::mi_good_size(size as usize) }).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn sqlite_init(_: *mut c_void) -> c_int {
    sqlite::SQLITE_OK
}

unsafe extern "C" fn sqlite_shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes either side of mimalloc's small-block limit and of its bins,
    /// with every alignment up to a page.
    #[test]
    fn blocks_are_aligned_usable_and_keep_their_contents() {
        let sizes = [1, 7, 8, 24, 48, 56, 1000, 1024, 1025, 1400, 4096, 70_000];
        let alignments = [1, 2, 4, 8, 16, 32, 64, 4096];
        for &size in &sizes {
            for &align in &alignments {
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                // SAFETY: the layouts are non-zero in size; each block is
                // written within its size and freed once, with its layout.
                unsafe {
                    let zeroed = Mimalloc.alloc_zeroed(layout);
                    assert!(!zeroed.is_null());
                    assert_eq!(zeroed as usize % align, 0, "zeroed {size} aligned to {align}");
                    assert!(std::slice::from_raw_parts(zeroed, size).iter().all(|&byte| byte == 0));
                    Mimalloc.dealloc(zeroed, layout);

                    let block = Mimalloc.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "{size} aligned to {align}");
                    for offset in 0..size {
                        block.add(offset).write(offset as u8);
                    }
                    let grown = Mimalloc.realloc(block, layout, size * 3);
                    assert!(!grown.is_null());
                    assert_eq!(grown as usize % align, 0, "{size} grown, aligned to {align}");
                    for offset in 0..size {
                        assert_eq!(grown.add(offset).read(), offset as u8, "{size} grown keeps byte {offset}");
                    }
                    Mimalloc.dealloc(grown, Layout::from_size_align(size * 3, align).expect("valid layout"));
                }
            }
        }
    }
}
