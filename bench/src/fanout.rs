//! S5: thousands of residents' phones subscribed to `parcelEvents`, each in a
//! unit of their own, while the desk registers parcels for random units at a
//! fixed rate. Each registration carries its send time in the tracking number,
//! so the phone that receives it measures publish → deliver end to end.

use std::{
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use api::auth::{Principal, TokenService};
use chrono::Utc;
use entity::{enums, unit, unit_membership, user};
use futures_util::{StreamExt, stream};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    fixture::{Child, Fixture, try_call},
    load::{ms, percentile},
    sockets,
};

const PARCEL_EVENTS: &str = "subscription { parcelEvents { kind parcel { trackingNumber } } }";
/// Registrations open at most this many HTTP connections at once, so that
/// beside 19,000 phones' sockets they fit the open-file limit when the server
/// falls behind. One that waits for a connection is still timed from when it
/// was due: its tracking number carries that time.
const MAX_REGISTRATIONS_IN_FLIGHT: usize = 256;
const REGISTER: &str = "mutation($unit: ID!, $tracking: String!) { registerParcel(input: {kind: PARCEL, carrier: \"顺丰\", trackingNumber: $tracking, recipientName: \"住户\", unitId: $unit}) { parcel { id } } }";

fn micros_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_micros() as u64)
}

/// `residents` residents, each the only one of a new unit; their unit ids
/// and access tokens.
async fn seed_residents(fixture: &Fixture, building_id: i64, residents: usize) -> Vec<(i64, String)> {
    let now = Utc::now();
    let tokens = TokenService::new(crate::fixture::JWT_SECRET.as_bytes(), &fixture.settings);
    let mut seeded = Vec::with_capacity(residents);
    for chunk_start in (0..residents).step_by(500) {
        let range = chunk_start..(chunk_start + 500).min(residents);
        let units: Vec<_> = range
            .clone()
            .map(|n| unit::ActiveModel {
                building_id: Set(building_id),
                number: Set(format!("S5-{n:05}")),
                floor: Set(None),
                contacts_version: Set(0),
                created_at: Set(now),
                ..Default::default()
            })
            .collect();
        let users: Vec<_> = range
            .clone()
            .map(|n| user::ActiveModel {
                phone: Set(format!("1770{n:07}")),
                name: Set(format!("住户{n}")),
                password_hash: Set(None),
                role: Set(enums::Role::Resident),
                position: Set(None),
                community_id: Set(None),
                created_at: Set(now),
                ..Default::default()
            })
            .collect();
        let units = unit::Entity::insert_many(units).exec_with_returning(fixture.db()).await.expect("units");
        let users = user::Entity::insert_many(users).exec_with_returning(fixture.db()).await.expect("users");
        let memberships: Vec<_> = units
            .iter()
            .zip(&users)
            .map(|(unit, user)| unit_membership::ActiveModel {
                user_id: Set(user.id),
                unit_id: Set(unit.id),
                relation: Set(enums::UnitRelation::Owner),
                moved_in_on: Set(now.date_naive()),
                moved_out_on: Set(None),
                created_at: Set(now),
                ..Default::default()
            })
            .collect();
        unit_membership::Entity::insert_many(memberships).exec(fixture.db()).await.expect("memberships");
        for (unit, user) in units.iter().zip(&users) {
            let principal =
                Principal { user_id: user.id, role: enums::Role::Resident, position: None, community_id: None };
            seeded.push((unit.id, tokens.issue(&principal).expect("token").token));
        }
    }
    seeded
}

pub async fn s5(fixture: &Fixture, subscribers: usize, per_second: u64, seconds: u64) {
    let servers = Child::apis(fixture).await;
    let seeded = fixture.seed_orders(&servers[0], 0).await;
    let residents = seed_residents(fixture, seeded.building_id, subscribers).await;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let phones: Vec<_> = stream::iter(residents.iter().enumerate())
        .map(|(n, (_, token))| {
            let source = Ipv4Addr::new(127, 0, 0, 2 + (n % 200) as u8);
            sockets::subscribed(servers[n % servers.len()].addr(), token, source, PARCEL_EVENTS)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for mut phone in phones {
        let latencies = latencies.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = phone.next().await {
                let Message::Text(text) = message else { continue };
                let Some(sent) = text.split("\"T").nth(1).and_then(|rest| rest.split('-').next()) else { continue };
                if let Ok(sent) = sent.parse::<u64>() {
                    let latency = Duration::from_micros(micros_now().saturating_sub(sent));
                    latencies.lock().expect("latencies").push(latency);
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "S5 {subscribers} subscribed phones, one-recipient parcel events at {per_second}/s for {seconds} s, {} API instance(s)",
        servers.len()
    );

    let desk = seeded.desk_token.clone();
    // With several instances the registrations alternate between them, so
    // about half of the events reach a phone on another instance.
    let urls: Vec<String> = servers.iter().map(|server| server.url("/graphql")).collect();
    let http = reqwest::Client::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_REGISTRATIONS_IN_FLIGHT));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    let total = per_second * seconds;
    let mut sends = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let (unit_id, _) = &residents[rand::random_range(0..residents.len())];
        let (http, url, desk) = (http.clone(), urls[n as usize % urls.len()].clone(), desk.clone());
        let variables = json!({ "unit": format!("unit_{unit_id}"), "tracking": format!("T{}-{n}", micros_now()) });
        let in_flight = in_flight.clone();
        sends.push(tokio::spawn(async move {
            let _connection = in_flight.acquire_owned().await.expect("semaphore");
            try_call(&http, &url, &desk, REGISTER, variables).await
        }));
    }
    // A refused registration publishes nothing: it is counted, not awaited.
    let mut refused = Vec::new();
    for send in sends {
        if let Err(errors) = send.await.expect("registration") {
            refused.push(errors);
        }
    }
    let registered = total as usize - refused.len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while latencies.lock().expect("latencies").len() < registered && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Some(first) = refused.first() {
        println!("  refused {} of {total} registrations, the first with {first}", refused.len());
    }
    let mut measured = latencies.lock().expect("latencies").clone();
    measured.sort_unstable();
    println!(
        "  delivered {} of {registered} registered; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms (targets 15 / 15 / 50 ms)",
        measured.len(),
        ms(percentile(&measured, 0.50)),
        ms(percentile(&measured, 0.99)),
        ms(percentile(&measured, 0.999))
    );
}
