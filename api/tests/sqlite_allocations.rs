//! SQLite's allocations once routed, in a process of their own: SQLite takes
//! its allocator only before it starts, once per process.

use std::ffi::{CString, c_void};

use libmimalloc_sys::mi_is_in_heap_region;
use libsqlite3_sys as sqlite;

#[test]
fn sqlite_allocates_from_mimalloc_and_keeps_no_statistics() {
    // SAFETY: this process's only test, and SQLite's first use.
    unsafe { api::allocator::route_sqlite_allocations() };
    // SAFETY: each block and handle is SQLite's, used while open and freed once.
    unsafe {
        let block = sqlite::sqlite3_malloc(100);
        assert!(!block.is_null());
        assert!(mi_is_in_heap_region(block.cast_const().cast::<c_void>()), "SQLite's block is mimalloc's");
        let grown = sqlite::sqlite3_realloc(block, 5000);
        assert!(mi_is_in_heap_region(grown.cast_const().cast::<c_void>()), "a grown block too");
        assert!(sqlite::sqlite3_msize(grown) >= 5000);
        sqlite::sqlite3_free(grown);

        let mut db = std::ptr::null_mut();
        let name = CString::new(":memory:").expect("no NUL");
        assert_eq!(sqlite::sqlite3_open(name.as_ptr(), &mut db), sqlite::SQLITE_OK);
        let sql =
            CString::new("CREATE TABLE t (v TEXT); INSERT INTO t VALUES (hex(randomblob(4000)));").expect("no NUL");
        let status = sqlite::sqlite3_exec(db, sql.as_ptr(), None, std::ptr::null_mut(), std::ptr::null_mut());
        assert_eq!(status, sqlite::SQLITE_OK);
        assert_eq!(sqlite::sqlite3_memory_used(), 0, "statistics are off, so nothing is counted");
        assert_eq!(sqlite::sqlite3_close(db), sqlite::SQLITE_OK);
    }
}
