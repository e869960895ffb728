//! The door every GraphQL request passes: its document is parsed once per
//! distinct query text (apps send the same few queries all day), checked
//! against the limits the engine does not enforce itself (aliases, NUL
//! characters), and every error that comes back gets a machine-readable code.
//! A document is validated against every rule once per operation and set of
//! variables it comes with (see [`AppSchema`]).
//!
//! These checks run here rather than as engine extensions: with no extension
//! installed the engine resolves each field without a hook around it, which a
//! page of orders with nested fields notices.

use std::{
    collections::VecDeque,
    num::NonZeroUsize,
    sync::{Arc, Mutex, MutexGuard},
};

use async_graphql::{
    BatchRequest, BatchResponse, ErrorExtensions, Pos, Request, Response, ServerError,
    parser::types::ExecutableDocument,
};
use futures_util::{Stream, StreamExt};
use lru::LruCache;

use super::{AppSchema, error_codes, hygiene, limits};
use crate::error::ApiError;

/// Distinct documents kept parsed.
const CACHED_DOCUMENTS: usize = 512;
/// Longer query texts are parsed each time: they are rare, and the cache's
/// memory stays bounded at about `CACHED_DOCUMENTS` × this.
const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;
/// Operations and variables remembered as accepted, per document: the
/// requests an app repeats (a first page, the caller's profile) rather than
/// each page of a scroll.
const ACCEPTED_PER_DOCUMENT: usize = 8;
/// Larger variables are validated every time, which bounds what is remembered
/// at about `CACHED_DOCUMENTS` × `ACCEPTED_PER_DOCUMENT` × this.
const MAX_REMEMBERED_VARIABLES_BYTES: usize = 1024;

pub struct Documents {
    max_aliases: usize,
    parsed: Mutex<LruCache<Arc<str>, Arc<ParsedDocument>>>,
}

struct ParsedDocument {
    document: ExecutableDocument,
    /// Whether the cache holds it: only then is what it was accepted with
    /// worth remembering.
    cached: bool,
    /// What the strict schema accepted this document with, latest last.
    accepted: Mutex<VecDeque<Acceptance>>,
}

/// The operation and the variables (as JSON) a document was validated with.
#[derive(PartialEq, Eq)]
struct Acceptance {
    operation: Option<String>,
    variables: String,
}

/// A request that passed [`Documents::prepare`], ready to run.
pub struct Prepared {
    pub request: Request,
    validation: Validation,
}

enum Validation {
    /// The strict schema accepted the same document, operation and variables.
    Repeated,
    /// Validate strictly, and remember the acceptance if it passes.
    ToRemember(Arc<ParsedDocument>, Acceptance),
    /// Validate strictly.
    Every,
}

impl Documents {
    pub fn new(max_aliases: usize) -> Self {
        let capacity = NonZeroUsize::new(CACHED_DOCUMENTS).unwrap_or(NonZeroUsize::MIN);
        Self { max_aliases, parsed: Mutex::new(LruCache::new(capacity)) }
    }

    /// Runs one request through the checks and the schema.
    pub async fn execute(&self, schema: &AppSchema, request: Request) -> Response {
        match self.prepare(request) {
            Ok(prepared) => self.execute_prepared(schema, prepared).await,
            Err(errors) => Response::from_errors(errors),
        }
    }

    /// Runs a request that [`Documents::prepare`] let through.
    pub async fn execute_prepared(&self, schema: &AppSchema, prepared: Prepared) -> Response {
        let Prepared { request, validation } = prepared;
        let response = match validation {
            Validation::Repeated => schema.validated.execute(request).await,
            Validation::ToRemember(document, acceptance) => {
                let response = schema.strict.execute(request).await;
                // Any error may be the validation's; only a clean run proves it passed.
                if response.errors.is_empty() {
                    document.remember(acceptance);
                }
                response
            }
            Validation::Every => schema.strict.execute(request).await,
        };
        with_codes(response)
    }

    /// Runs a batch's operations one after the other, as the engine would.
    pub async fn execute_batch(&self, schema: &AppSchema, batch: BatchRequest) -> BatchResponse {
        match batch {
            BatchRequest::Single(request) => BatchResponse::Single(self.execute(schema, request).await),
            BatchRequest::Batch(requests) => {
                let mut responses = Vec::with_capacity(requests.len());
                for request in requests {
                    responses.push(self.execute(schema, request).await);
                }
                BatchResponse::Batch(responses)
            }
        }
    }

    /// The stream of a subscription's results, or why its document is refused.
    /// Subscriptions are validated strictly: each is validated once for its
    /// whole life.
    pub fn execute_stream(
        &self,
        schema: &AppSchema,
        request: Request,
    ) -> Result<impl Stream<Item = Response> + Send + 'static, Vec<ServerError>> {
        let (request, _) = self.checked(request)?;
        Ok(schema.strict.execute_stream(request).map(with_codes))
    }

    /// The request with its document parsed and checked, and how much of it
    /// to validate, or the errors (with their codes) that refuse it.
    pub fn prepare(&self, request: Request) -> Result<Prepared, Vec<ServerError>> {
        let (request, parsed) = self.checked(request)?;
        let acceptance = parsed.as_ref().and_then(|parsed| parsed.acceptance_of(&request));
        let validation = match (parsed, acceptance) {
            (Some(parsed), Some(acceptance)) if parsed.accepted(&acceptance) => Validation::Repeated,
            (Some(parsed), Some(acceptance)) => Validation::ToRemember(parsed, acceptance),
            _ => Validation::Every,
        };
        Ok(Prepared { request, validation })
    }

    /// The request with its document parsed and checked, with the parsed
    /// document, or the errors (with their codes) that refuse it. A document
    /// that does not parse is left for the engine, which reports syntax
    /// errors in its own words.
    fn checked(&self, mut request: Request) -> Result<(Request, Option<Arc<ParsedDocument>>), Vec<ServerError>> {
        let refusal = |mut error| {
            error_codes::assign_code(&mut error);
            vec![error]
        };
        hygiene::check_variables(&request.variables).map_err(refusal)?;
        let parsed = self.parsed(&request.query).map_err(refusal)?;
        if let Some(parsed) = &parsed {
            request.set_parsed_query(parsed.document.clone());
        }
        Ok((request, parsed))
    }

    fn parsed(&self, query: &str) -> Result<Option<Arc<ParsedDocument>>, ServerError> {
        let cacheable = query.len() <= MAX_CACHED_QUERY_BYTES;
        if cacheable && let Some(parsed) = self.cache().get(query) {
            return Ok(Some(parsed.clone()));
        }
        if hygiene::has_nul_literal(query) {
            let error = ApiError::bad_input("query", "must not contain the NUL character");
            return Err(error.extend().into_server_error(Pos::default()));
        }
        let Ok(document) = async_graphql::parser::parse_query(query) else {
            return Ok(None);
        };
        let aliases = limits::count_aliases(&document);
        if aliases > self.max_aliases {
            return Err(ServerError::new(format!("too many aliases: {aliases}, at most {}", self.max_aliases), None));
        }
        let parsed = Arc::new(ParsedDocument { document, cached: cacheable, accepted: Mutex::default() });
        if cacheable {
            self.cache().put(Arc::from(query), parsed.clone());
        }
        Ok(Some(parsed))
    }

    fn cache(&self) -> MutexGuard<'_, LruCache<Arc<str>, Arc<ParsedDocument>>> {
        // A panic elsewhere cannot leave the cache half-updated: each call is whole.
        self.parsed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ParsedDocument {
    /// What to remember `request` by, if it is small enough to remember.
    fn acceptance_of(&self, request: &Request) -> Option<Acceptance> {
        if !self.cached {
            return None;
        }
        let variables = serde_json::to_string(&request.variables).ok()?;
        (variables.len() <= MAX_REMEMBERED_VARIABLES_BYTES)
            .then(|| Acceptance { operation: request.operation_name.clone(), variables })
    }

    fn accepted(&self, acceptance: &Acceptance) -> bool {
        self.acceptances().contains(acceptance)
    }

    fn remember(&self, acceptance: Acceptance) {
        let mut accepted = self.acceptances();
        if accepted.contains(&acceptance) {
            return;
        }
        if accepted.len() == ACCEPTED_PER_DOCUMENT {
            accepted.pop_front();
        }
        accepted.push_back(acceptance);
    }

    fn acceptances(&self) -> MutexGuard<'_, VecDeque<Acceptance>> {
        // Each change to the list is whole, so a panic elsewhere cannot leave it torn.
        self.accepted.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn with_codes(mut response: Response) -> Response {
    response.errors.iter_mut().for_each(error_codes::assign_code);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_too_many_aliases_and_nul_literals_before_and_after_caching() {
        let documents = Documents::new(2);
        let two = "{ a: __typename b: __typename }";
        let three = "{ a: __typename b: __typename c: __typename }";
        for _ in 0..2 {
            assert!(documents.prepare(Request::new(two)).is_ok());
            assert!(documents.prepare(Request::new(three)).is_err());
            assert!(documents.prepare(Request::new("{ me(x: \"\\u0000\") { id } }")).is_err());
        }
    }

    #[test]
    fn leaves_syntax_errors_to_the_engine() {
        let documents = Documents::new(30);
        let mut prepared = documents.prepare(Request::new("{ unclosed")).expect("passed on");
        assert!(prepared.request.parsed_query().is_err());
    }

    const PAGE: &str = "query Page($first: Int!) { repairOrders(first: $first) { edges { node { id } } } }";

    fn page(variables: serde_json::Value) -> Request {
        Request::new(PAGE).variables(async_graphql::Variables::from_json(variables))
    }

    /// Stands for the strict schema accepting the request: remembers it as
    /// `execute_prepared` does after a clean run.
    fn accept(prepared: Prepared) {
        match prepared.validation {
            Validation::ToRemember(document, acceptance) => document.remember(acceptance),
            _ => panic!("expected a request to validate and remember"),
        }
    }

    fn is_repeated(prepared: &Prepared) -> bool {
        matches!(prepared.validation, Validation::Repeated)
    }

    #[test]
    fn skips_strict_validation_only_for_the_same_operation_and_variables() {
        let documents = Documents::new(30);
        let first = documents.prepare(page(serde_json::json!({ "first": 20 }))).expect("prepared");
        assert!(!is_repeated(&first), "a new document is validated strictly");
        accept(first);

        let again = documents.prepare(page(serde_json::json!({ "first": 20 }))).expect("prepared");
        assert!(is_repeated(&again));

        for other in [
            page(serde_json::json!({ "first": 21 })),
            page(serde_json::json!({ "first": "20" })),
            page(serde_json::json!({})),
            page(serde_json::json!({ "first": 20 })).operation_name("Other"),
        ] {
            let prepared = documents.prepare(other).expect("prepared");
            assert!(matches!(prepared.validation, Validation::ToRemember(..)), "validated strictly");
        }
    }

    #[test]
    fn remembers_a_bounded_number_of_acceptances_per_document() {
        let documents = Documents::new(30);
        for first in 0..=ACCEPTED_PER_DOCUMENT {
            accept(documents.prepare(page(serde_json::json!({ "first": first }))).expect("prepared"));
        }
        let oldest = documents.prepare(page(serde_json::json!({ "first": 0 }))).expect("prepared");
        assert!(!is_repeated(&oldest), "the oldest acceptance is forgotten");
        let latest = documents.prepare(page(serde_json::json!({ "first": ACCEPTED_PER_DOCUMENT }))).expect("prepared");
        assert!(is_repeated(&latest));
    }

    #[test]
    fn validates_large_variables_and_uncached_documents_every_time() {
        let documents = Documents::new(30);
        let large = "x".repeat(MAX_REMEMBERED_VARIABLES_BYTES);
        let prepared = documents.prepare(page(serde_json::json!({ "first": 1, "note": large }))).expect("prepared");
        assert!(matches!(prepared.validation, Validation::Every));

        let long_query = format!("{PAGE} {}", "#".repeat(MAX_CACHED_QUERY_BYTES));
        let prepared = documents.prepare(Request::new(long_query)).expect("prepared");
        assert!(matches!(prepared.validation, Validation::Every));
    }
}
