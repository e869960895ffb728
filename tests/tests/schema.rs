//! `schema.graphql` is what the code serves. Regenerate it with
//! `UPDATE_SCHEMA=1 cargo test -p tests --test schema`.

#[test]
fn schema_graphql_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema.graphql");
    let generated = api::graphql::schema::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema.graphql");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schema.graphql is out of date: run `UPDATE_SCHEMA=1 cargo test -p tests --test schema` and commit it"
    );
}
