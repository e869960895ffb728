//! Authentication: login and `me` per role, login throttling, refresh-token
//! rotation and reuse detection, logout, and access tokens the server must refuse.

use std::time::Duration;

use api::demo::{DEMO_COMMUNITY, DEMO_PASSWORD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use serde_json::{Value, json};
use tests::{TEST_JWT_SECRET, TestApp, error_code, id_of, spawn_app, spawn_app_with};

const LOGIN: &str = "mutation($phone: String!, $password: String!) { login(input: {phone: $phone, password: $password}) { accessToken refreshToken accessTokenExpiresAt refreshTokenExpiresAt viewer { id name phone role } } }";
const REFRESH: &str = "mutation($token: String!) { refreshToken(input: {refreshToken: $token}) { accessToken refreshToken accessTokenExpiresAt refreshTokenExpiresAt viewer { id } } }";
const LOGOUT: &str = "mutation($token: String!) { logout(input: {refreshToken: $token}) { revoked } }";
const ME_ID: &str = "{ me { id } }";
const ME_FULL: &str = "{ me { id name phone role position units { relation unit { number building { name } } } buildings { name } community { name } } }";

const ISSUER: &str = "property-service";
const AUDIENCE: &str = "property-apps";

// ---------------------------------------------------------------------------
// helpers

async fn login(app: &TestApp, phone: &str, password: &str) -> Value {
    app.graphql(None, LOGIN, json!({ "phone": phone, "password": password })).await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Value {
    app.graphql(None, REFRESH, json!({ "token": refresh_token })).await
}

async fn logout(app: &TestApp, refresh_token: &str) -> Value {
    app.graphql(None, LOGOUT, json!({ "token": refresh_token })).await
}

/// A successful login's payload (`data.login`) for a home-community account.
async fn session_of(app: &TestApp, key: &str) -> Value {
    let body = login(app, &app.home.account(key).phone, DEMO_PASSWORD).await;
    assert!(body.get("errors").is_none(), "login of {key} failed: {body}");
    body["data"]["login"].clone()
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

fn time_at(value: &Value, pointer: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(str_at(value, pointer))
        .unwrap_or_else(|err| panic!("{pointer} is not an RFC 3339 timestamp ({err}) in {value}"))
        .with_timezone(&Utc)
}

fn user_id(app: &TestApp, key: &str) -> String {
    id_of("usr", app.home.account(key).user_id)
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// Claims the server accepts: the home community's manager, valid for ten minutes.
fn manager_claims(app: &TestApp) -> Value {
    json!({
        "sub": app.home.account("manager").user_id.to_string(),
        "role": "STAFF",
        "pos": "MANAGER",
        "cid": app.home.community.id,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now(),
        "exp": now() + 600,
    })
}

fn sign_with(algorithm: Algorithm, secret: &[u8], claims: &Value) -> String {
    encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret)).expect("sign token")
}

/// Signed like the server signs: HS256 with the server's secret.
fn forge(claims: &Value) -> String {
    sign_with(Algorithm::HS256, TEST_JWT_SECRET.as_bytes(), claims)
}

/// Unpadded base64url (RFC 4648 §5), as JWTs use it.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for index in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((group >> (18 - 6 * index)) & 63) as usize]));
        }
    }
    out
}

/// A JWT assembled by hand from raw JSON header and payload; signed HS256 with
/// the server's secret when `signed`, else with an empty signature.
fn hand_crafted(header: &str, payload: &str, signed: bool) -> String {
    let message = format!("{}.{}", base64url(header.as_bytes()), base64url(payload.as_bytes()));
    let signature = if signed {
        let key = EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes());
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign message")
    } else {
        String::new()
    };
    format!("{message}.{signature}")
}

const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The control for every forgery below: a token built the way the server builds
/// them is accepted, so a refusal is down to the one thing each test changes.
async fn assert_accepted_as_manager(app: &TestApp, token: &str) {
    let data = app.data(Some(token), ME_ID, json!({})).await;
    assert_eq!(data["me"]["id"], user_id(app, "manager"));
}

async fn assert_refused(app: &TestApp, token: &str) {
    let body = app.graphql(Some(token), ME_ID, json!({})).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "token {token} got {body}");
    assert!(body["data"]["me"].is_null(), "a refused token must not read `me`: {body}");
}

// ---------------------------------------------------------------------------
// 1. login and `me`

#[tokio::test]
async fn login_returns_both_tokens_their_expiry_and_the_viewer() {
    // Arrange
    let app = spawn_app().await;
    let owner = app.home.account("owner");

    // Act
    let before = Utc::now();
    let body = login(&app, &owner.phone, DEMO_PASSWORD).await;

    // Assert
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    let payload = &body["data"]["login"];
    let access = str_at(payload, "/accessToken");
    let refresh_token = str_at(payload, "/refreshToken");
    assert_eq!(access.split('.').count(), 3, "the access token is a JWT");
    assert!(refresh_token.len() >= 32, "the refresh token is long and random: {refresh_token}");
    assert_ne!(access, refresh_token);
    let access_expires = time_at(payload, "/accessTokenExpiresAt");
    let ahead = access_expires - before;
    assert!(
        ahead > chrono::Duration::minutes(14) && ahead < chrono::Duration::minutes(16),
        "access token expires about 15 min ahead, got {ahead}"
    );
    let refresh_expires = time_at(payload, "/refreshTokenExpiresAt");
    let refresh_ahead = refresh_expires - before;
    assert!(
        refresh_ahead > chrono::Duration::days(29) && refresh_ahead < chrono::Duration::days(31),
        "refresh token expires about 30 days ahead, got {refresh_ahead}"
    );
    assert_eq!(payload["viewer"]["id"], id_of("usr", owner.user_id));
    assert_eq!(payload["viewer"]["name"], "王建国");
    assert_eq!(payload["viewer"]["phone"], owner.phone.as_str());
    assert_eq!(payload["viewer"]["role"], "RESIDENT");
}

#[tokio::test]
async fn the_access_token_carries_the_documented_claims() {
    // Arrange
    let app = spawn_app().await;
    let front_desk = app.home.account("front_desk");

    // Act
    let session = session_of(&app, "front_desk").await;

    // Assert
    let token = str_at(&session, "/accessToken");
    assert_eq!(decode_header(token).expect("header").alg, Algorithm::HS256);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let claims = decode::<Value>(token, &DecodingKey::from_secret(TEST_JWT_SECRET.as_bytes()), &validation)
        .expect("the access token verifies with the configured secret, issuer and audience")
        .claims;
    assert_eq!(claims["sub"], front_desk.user_id.to_string());
    assert_eq!(claims["role"], "STAFF");
    assert_eq!(claims["pos"], "FRONT_DESK");
    assert_eq!(claims["cid"], app.home.community.id);
    assert_eq!(claims["exp"].as_i64(), Some(time_at(&session, "/accessTokenExpiresAt").timestamp()));
    assert!(claims["iat"].as_i64().is_some_and(|iat| (iat - now()).abs() < 60), "iat is now: {claims}");
}

#[tokio::test]
async fn me_shows_an_owner_both_units_with_relation_and_building() {
    // Arrange
    let app = spawn_app().await;
    let token = app.token("owner").await;

    // Act
    let data = app.data(Some(&token), ME_FULL, json!({})).await;

    // Assert
    let me = &data["me"];
    assert_eq!(me["id"], user_id(&app, "owner"));
    assert_eq!(me["name"], "王建国");
    assert_eq!(me["phone"], "13800001001", "the viewer sees their own number in full");
    assert_eq!(me["role"], "RESIDENT");
    assert!(me["position"].is_null());
    let mut units: Vec<(String, String, String)> = me["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|m| {
            (
                str_at(m, "/unit/number").to_owned(),
                str_at(m, "/relation").to_owned(),
                str_at(m, "/unit/building/name").to_owned(),
            )
        })
        .collect();
    units.sort();
    assert_eq!(
        units,
        vec![
            ("1-101".to_owned(), "OWNER".to_owned(), "1号楼".to_owned()),
            ("2-201".to_owned(), "OWNER".to_owned(), "2号楼".to_owned()),
        ]
    );
    assert_eq!(me["buildings"], json!([]));
    assert_eq!(me["community"]["name"], DEMO_COMMUNITY);
}

#[tokio::test]
async fn me_shows_a_butler_the_assigned_buildings_and_community() {
    // Arrange
    let app = spawn_app().await;
    let token = app.token("butler").await;

    // Act
    let data = app.data(Some(&token), ME_FULL, json!({})).await;

    // Assert
    let me = &data["me"];
    assert_eq!(me["id"], user_id(&app, "butler"));
    assert_eq!(me["phone"], "13800001005");
    assert_eq!(me["role"], "BUTLER");
    assert!(me["position"].is_null());
    assert_eq!(me["buildings"], json!([{ "name": "1号楼" }]));
    assert_eq!(me["community"]["name"], "翠湖花园");
    assert_eq!(me["units"], json!([]));
}

#[tokio::test]
async fn me_shows_a_staff_member_the_position_and_community() {
    // Arrange
    let app = spawn_app().await;
    let token = app.token("front_desk").await;

    // Act
    let data = app.data(Some(&token), ME_FULL, json!({})).await;

    // Assert
    let me = &data["me"];
    assert_eq!(me["id"], user_id(&app, "front_desk"));
    assert_eq!(me["name"], "刘前台");
    assert_eq!(me["phone"], "13800001006");
    assert_eq!(me["role"], "STAFF");
    assert_eq!(me["position"], "FRONT_DESK");
    assert_eq!(me["community"]["name"], "翠湖花园");
    assert_eq!(me["buildings"], json!([]));
    assert_eq!(me["units"], json!([]));
}

// ---------------------------------------------------------------------------
// 2. failed logins

#[tokio::test]
async fn a_wrong_password_and_an_unknown_phone_fail_alike() {
    // Arrange
    let app = spawn_app().await;
    let owner_phone = app.home.account("owner").phone.clone();

    // Act
    let wrong_password = login(&app, &owner_phone, "not-the-password").await;
    let unknown_phone = login(&app, "13800009999", DEMO_PASSWORD).await;

    // Assert
    assert_eq!(error_code(&wrong_password), Some("UNAUTHENTICATED"), "{wrong_password}");
    assert_eq!(error_code(&unknown_phone), Some("UNAUTHENTICATED"), "{unknown_phone}");
    assert!(wrong_password["data"]["login"].is_null());
    assert!(unknown_phone["data"]["login"].is_null());
    let message = |body: &Value| body["errors"][0]["message"].as_str().expect("message").to_owned();
    assert_eq!(message(&wrong_password), message(&unknown_phone), "the two failures must not be told apart");
}

// ---------------------------------------------------------------------------
// 3. throttling

#[tokio::test]
async fn five_failures_lock_the_phone_even_for_the_right_password() {
    // Arrange
    let app = spawn_app().await;
    let owner_phone = app.home.account("owner").phone.clone();
    for attempt in 1..=5 {
        let failed = login(&app, &owner_phone, "guess-number-x").await;
        assert_eq!(error_code(&failed), Some("UNAUTHENTICATED"), "attempt {attempt}: {failed}");
    }

    // Act
    let locked = login(&app, &owner_phone, DEMO_PASSWORD).await;
    let other_phone = login(&app, &app.home.account("tenant").phone, DEMO_PASSWORD).await;

    // Assert
    assert_eq!(error_code(&locked), Some("RATE_LIMITED"), "{locked}");
    assert!(locked["data"]["login"].is_null(), "a locked phone gets no session: {locked}");
    let retry_after = locked["errors"][0]["extensions"]["retryAfter"].as_f64();
    assert!(
        retry_after.is_some_and(|secs| secs > 0.0 && secs <= 15.0 * 60.0),
        "retryAfter is a positive number of seconds within the window: {locked}"
    );
    assert!(other_phone.get("errors").is_none(), "another phone is unaffected: {other_phone}");
    assert!(other_phone["data"]["login"]["accessToken"].is_string());
}

#[tokio::test]
async fn the_lock_lifts_once_the_failure_window_has_passed() {
    // Arrange
    let app = spawn_app_with(|settings| settings.login_failure_window = Duration::from_secs(2)).await;
    let owner_phone = app.home.account("owner").phone.clone();
    for attempt in 1..=5 {
        let failed = login(&app, &owner_phone, "guess-number-x").await;
        assert_eq!(error_code(&failed), Some("UNAUTHENTICATED"), "attempt {attempt}: {failed}");
    }
    let locked = login(&app, &owner_phone, DEMO_PASSWORD).await;
    assert_eq!(error_code(&locked), Some("RATE_LIMITED"), "locked within the window: {locked}");

    // Act
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after_window = login(&app, &owner_phone, DEMO_PASSWORD).await;

    // Assert
    assert!(after_window.get("errors").is_none(), "the right password works again: {after_window}");
    assert_eq!(after_window["data"]["login"]["viewer"]["id"], user_id(&app, "owner"));
}

#[tokio::test]
async fn concurrent_failures_get_no_more_guesses_than_the_limit() {
    // Arrange
    let app = spawn_app().await;
    let owner_phone = app.home.account("owner").phone.clone();
    let guesses: Vec<String> = (0..20).map(|i| format!("guess-number-{i:02}")).collect();

    // Act: twenty wrong passwords at once, as a brute-force script would send them.
    let answers = futures_util::future::join_all(guesses.iter().map(|guess| login(&app, &owner_phone, guess))).await;

    // Assert: every answer is a refusal, and at most five guesses were checked.
    let checked = answers.iter().filter(|body| error_code(body) == Some("UNAUTHENTICATED")).count();
    let limited = answers.iter().filter(|body| error_code(body) == Some("RATE_LIMITED")).count();
    assert_eq!(checked + limited, guesses.len(), "every guess is refused: {answers:?}");
    assert!(checked <= 5, "{checked} of {} concurrent guesses were checked against the password", guesses.len());
    let locked = login(&app, &owner_phone, DEMO_PASSWORD).await;
    assert_eq!(error_code(&locked), Some("RATE_LIMITED"), "{locked}");
}

// ---------------------------------------------------------------------------
// 4. refresh

#[tokio::test]
async fn refresh_rotates_the_pair_and_retires_the_old_refresh_token() {
    // Arrange
    let app = spawn_app().await;
    let session = session_of(&app, "owner").await;
    let first_refresh = str_at(&session, "/refreshToken").to_owned();

    // Act
    let rotated = refresh(&app, &first_refresh).await;

    // Assert
    assert!(rotated.get("errors").is_none(), "refresh failed: {rotated}");
    let pair = &rotated["data"]["refreshToken"];
    let new_access = str_at(pair, "/accessToken");
    let new_refresh = str_at(pair, "/refreshToken");
    assert_ne!(new_refresh, first_refresh, "a new refresh token is issued");
    assert_eq!(pair["viewer"]["id"], user_id(&app, "owner"));
    let ahead = time_at(pair, "/accessTokenExpiresAt") - Utc::now();
    assert!(ahead > chrono::Duration::minutes(14), "the new access token is fresh: {ahead}");
    assert!(time_at(pair, "/refreshTokenExpiresAt") > Utc::now() + chrono::Duration::days(29));
    let me = app.data(Some(new_access), ME_ID, json!({})).await;
    assert_eq!(me["me"]["id"], user_id(&app, "owner"), "the new access token works");
    let old_again = refresh(&app, &first_refresh).await;
    assert_eq!(error_code(&old_again), Some("UNAUTHENTICATED"), "the old refresh token is retired: {old_again}");
    assert!(old_again["data"]["refreshToken"].is_null());
}

#[tokio::test]
async fn reusing_a_refresh_token_revokes_the_whole_family() {
    // Arrange: two rotations, so the newest token is two steps from the reused one.
    let app = spawn_app().await;
    let session = session_of(&app, "tenant").await;
    let first = str_at(&session, "/refreshToken").to_owned();
    let second_body = refresh(&app, &first).await;
    let second = str_at(&second_body, "/data/refreshToken/refreshToken").to_owned();
    let third_body = refresh(&app, &second).await;
    let newest = str_at(&third_body, "/data/refreshToken/refreshToken").to_owned();

    // Act
    let reuse = refresh(&app, &first).await;
    let newest_after_reuse = refresh(&app, &newest).await;

    // Assert
    assert_eq!(error_code(&reuse), Some("UNAUTHENTICATED"), "{reuse}");
    assert_eq!(
        error_code(&newest_after_reuse),
        Some("UNAUTHENTICATED"),
        "the newest refresh token of the family is revoked too: {newest_after_reuse}"
    );
    assert!(newest_after_reuse["data"]["refreshToken"].is_null());
}

#[tokio::test]
async fn a_garbage_refresh_token_is_refused() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let garbage = refresh(&app, "definitely-not-a-refresh-token").await;
    let empty = refresh(&app, "").await;

    // Assert
    assert_eq!(error_code(&garbage), Some("UNAUTHENTICATED"), "{garbage}");
    assert!(garbage["data"]["refreshToken"].is_null());
    assert_eq!(error_code(&empty), Some("UNAUTHENTICATED"), "{empty}");
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    // Arrange
    let app = spawn_app_with(|settings| settings.refresh_token_ttl = Duration::from_secs(1)).await;
    let session = session_of(&app, "owner").await;
    let refresh_token = str_at(&session, "/refreshToken").to_owned();

    // Act
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = refresh(&app, &refresh_token).await;

    // Assert
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    assert!(body["data"]["refreshToken"].is_null());
}

#[tokio::test]
async fn a_stale_access_token_does_not_stop_login_or_refresh() {
    // Arrange: a client still sending an expired access token.
    let app = spawn_app().await;
    let session = session_of(&app, "owner").await;
    let mut claims = manager_claims(&app);
    claims["exp"] = json!(now() - 3600);
    let stale = forge(&claims);
    let owner_phone = app.home.account("owner").phone.clone();

    // Act
    let refreshed = app.graphql(Some(&stale), REFRESH, json!({ "token": str_at(&session, "/refreshToken") })).await;
    let logged_in = app.graphql(Some(&stale), LOGIN, json!({ "phone": owner_phone, "password": DEMO_PASSWORD })).await;

    // Assert
    assert!(refreshed.get("errors").is_none(), "refresh must not need a valid access token: {refreshed}");
    assert!(refreshed["data"]["refreshToken"]["accessToken"].is_string());
    assert!(logged_in.get("errors").is_none(), "login must not need a valid access token: {logged_in}");
    assert_eq!(logged_in["data"]["login"]["viewer"]["id"], user_id(&app, "owner"));
}

// ---------------------------------------------------------------------------
// 5. logout

#[tokio::test]
async fn logout_ends_the_session() {
    // Arrange
    let app = spawn_app().await;
    let session = session_of(&app, "owner").await;
    let refresh_token = str_at(&session, "/refreshToken").to_owned();

    // Act
    let body = logout(&app, &refresh_token).await;

    // Assert
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["logout"]["revoked"], true);
    let after = refresh(&app, &refresh_token).await;
    assert_eq!(error_code(&after), Some("UNAUTHENTICATED"), "a logged-out refresh token no longer refreshes: {after}");
    let again = app.data(None, LOGOUT, json!({ "token": refresh_token })).await;
    assert_eq!(again["logout"]["revoked"], false, "a session already ended is not revoked twice");
}

#[tokio::test]
async fn logout_of_an_unknown_token_revokes_nothing() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let data = app.data(None, LOGOUT, json!({ "token": "no-such-refresh-token" })).await;

    // Assert
    assert_eq!(data["logout"]["revoked"], false);
}

// ---------------------------------------------------------------------------
// 6. forged access tokens

#[tokio::test]
async fn a_correctly_forged_token_is_accepted() {
    // Arrange
    let app = spawn_app().await;
    let claims = manager_claims(&app);

    // Act
    let encoded = forge(&claims);
    let by_hand = hand_crafted(HS256_HEADER, &claims.to_string(), true);

    // Assert: both ways of building tokens used below yield tokens the server takes.
    assert_accepted_as_manager(&app, &encoded).await;
    assert_accepted_as_manager(&app, &by_hand).await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    // Arrange
    let app = spawn_app().await;
    assert_accepted_as_manager(&app, &forge(&manager_claims(&app))).await;
    let mut claims = manager_claims(&app);
    claims["iat"] = json!(now() - 4500);
    claims["exp"] = json!(now() - 3600);

    // Act
    let token = forge(&claims);

    // Assert
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_refused() {
    // Arrange: the owner's genuine token with the manager's claims swapped in.
    let app = spawn_app().await;
    let genuine = app.token("owner").await;
    assert_eq!(app.data(Some(&genuine), ME_ID, json!({})).await["me"]["id"], user_id(&app, "owner"));
    let parts: Vec<&str> = genuine.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims = manager_claims(&app);
    assert_accepted_as_manager(&app, &forge(&claims)).await;

    // Act
    let tampered = format!("{}.{}.{}", parts[0], base64url(claims.to_string().as_bytes()), parts[2]);

    // Assert
    assert_refused(&app, &tampered).await;
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let claims = manager_claims(&app);
    assert_accepted_as_manager(&app, &forge(&claims)).await;

    // Act
    let token = sign_with(Algorithm::HS256, b"another-secret-that-is-at-least-32-bytes-long", &claims);

    // Assert
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let payload = manager_claims(&app).to_string();
    assert_accepted_as_manager(&app, &hand_crafted(HS256_HEADER, &payload, true)).await;

    // Act
    let token = hand_crafted(r#"{"alg":"none","typ":"JWT"}"#, &payload, false);

    // Assert
    assert!(token.ends_with('.'), "empty signature: {token}");
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn a_token_signed_with_another_algorithm_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let claims = manager_claims(&app);
    assert_accepted_as_manager(&app, &forge(&claims)).await;

    // Act: the right secret, but HS512 instead of the configured HS256.
    let token = sign_with(Algorithm::HS512, TEST_JWT_SECRET.as_bytes(), &claims);

    // Assert
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    // Arrange
    let app = spawn_app().await;
    assert_accepted_as_manager(&app, &forge(&manager_claims(&app))).await;
    let mut claims = manager_claims(&app);
    claims["iss"] = json!("someone-else");

    // Act
    let token = forge(&claims);

    // Assert
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    // Arrange
    let app = spawn_app().await;
    assert_accepted_as_manager(&app, &forge(&manager_claims(&app))).await;
    let mut claims = manager_claims(&app);
    claims["aud"] = json!("other-apps");

    // Act
    let token = forge(&claims);

    // Assert
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn a_token_whose_exp_is_a_string_is_refused() {
    // Arrange
    let app = spawn_app().await;
    assert_accepted_as_manager(&app, &hand_crafted(HS256_HEADER, &manager_claims(&app).to_string(), true)).await;
    let mut claims = manager_claims(&app);
    claims["exp"] = json!("9999999999");

    // Act
    let token = hand_crafted(HS256_HEADER, &claims.to_string(), true);

    // Assert
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    // Arrange
    let app = spawn_app().await;
    assert_accepted_as_manager(&app, &forge(&manager_claims(&app))).await;
    let mut claims = manager_claims(&app);
    claims.as_object_mut().expect("claims object").remove("exp");

    // Act
    let token = forge(&claims);

    // Assert
    assert_refused(&app, &token).await;
}

#[tokio::test]
async fn a_token_sent_with_the_basic_scheme_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let token = forge(&manager_claims(&app));
    assert_accepted_as_manager(&app, &token).await;

    // Act
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("authorization", format!("Basic {token}"))
        .json(&json!({ "query": ME_ID }))
        .send()
        .await
        .expect("request");

    // Assert
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    assert!(body["data"]["me"].is_null());
}

// ---------------------------------------------------------------------------
// 7. anonymous callers

#[tokio::test]
async fn an_anonymous_me_is_unauthenticated() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let body = app.graphql(None, ME_ID, json!({})).await;

    // Assert
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    assert!(body["data"]["me"].is_null());
}

#[tokio::test]
async fn login_needs_no_token() {
    // Arrange
    let app = spawn_app().await;
    let butler_phone = app.home.account("butler").phone.clone();

    // Act
    let data = app.data(None, LOGIN, json!({ "phone": butler_phone, "password": DEMO_PASSWORD })).await;

    // Assert
    assert!(data["login"]["accessToken"].is_string());
    assert_eq!(data["login"]["viewer"]["id"], user_id(&app, "butler"));
    assert_eq!(data["login"]["viewer"]["role"], "BUTLER");
}
