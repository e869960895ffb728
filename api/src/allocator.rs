//! The global allocator: mimalloc, asked for a plain block whenever the
//! alignment wanted is one every mimalloc block already has.
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
    ffi::c_void,
};

use libmimalloc_sys as ffi;

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
