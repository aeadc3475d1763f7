//! Lets the PostgreSQL variants of the integration tests say clearly that they are
//! skipped (`ignored`) when `JJONGAL_TEST_DATABASE_URL` is not set.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(jjongal_pg)");
    println!("cargo::rerun-if-env-changed=JJONGAL_TEST_DATABASE_URL");
    if std::env::var_os("JJONGAL_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=jjongal_pg");
    }
}
