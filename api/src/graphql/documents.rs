//! The door every GraphQL request passes: its document is parsed once per
//! distinct query text (apps send the same few queries all day), checked
//! against the limits the engine does not enforce itself (aliases, NUL
//! characters), and every error that comes back gets a machine-readable code.
//!
//! These checks run here rather than as engine extensions: with no extension
//! installed the engine resolves each field without a hook around it, which a
//! page of orders with nested fields notices.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
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

pub struct Documents {
    max_aliases: usize,
    parsed: Mutex<LruCache<Arc<str>, Arc<ExecutableDocument>>>,
}

impl Documents {
    pub fn new(max_aliases: usize) -> Self {
        let capacity = NonZeroUsize::new(CACHED_DOCUMENTS).unwrap_or(NonZeroUsize::MIN);
        Self { max_aliases, parsed: Mutex::new(LruCache::new(capacity)) }
    }

    /// Runs one request through the checks and the schema.
    pub async fn execute(&self, schema: &AppSchema, request: Request) -> Response {
        match self.prepare(request) {
            Ok(request) => self.execute_prepared(schema, request).await,
            Err(errors) => Response::from_errors(errors),
        }
    }

    /// Runs a request that [`Documents::prepare`] let through.
    pub async fn execute_prepared(&self, schema: &AppSchema, request: Request) -> Response {
        with_codes(schema.execute(request).await)
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
    pub fn execute_stream(
        &self,
        schema: &AppSchema,
        request: Request,
    ) -> Result<impl Stream<Item = Response> + Send + 'static, Vec<ServerError>> {
        let request = self.prepare(request)?;
        Ok(schema.execute_stream(request).map(with_codes))
    }

    /// The request with its document parsed and checked, or the errors (with
    /// their codes) that refuse it. A document that does not parse is left for
    /// the engine, which reports syntax errors in its own words.
    pub fn prepare(&self, mut request: Request) -> Result<Request, Vec<ServerError>> {
        let refusal = |mut error| {
            error_codes::assign_code(&mut error);
            vec![error]
        };
        hygiene::check_variables(&request.variables).map_err(refusal)?;
        let document = match self.parsed(&request.query) {
            Ok(Some(document)) => document,
            Ok(None) => return Ok(request),
            Err(error) => return Err(refusal(error)),
        };
        request.set_parsed_query(ExecutableDocument::clone(&document));
        Ok(request)
    }

    fn parsed(&self, query: &str) -> Result<Option<Arc<ExecutableDocument>>, ServerError> {
        let cacheable = query.len() <= MAX_CACHED_QUERY_BYTES;
        if cacheable && let Some(document) = self.cache().get(query) {
            return Ok(Some(document.clone()));
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
        let document = Arc::new(document);
        if cacheable {
            self.cache().put(Arc::from(query), document.clone());
        }
        Ok(Some(document))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LruCache<Arc<str>, Arc<ExecutableDocument>>> {
        // A panic elsewhere cannot leave the cache half-updated: each call is whole.
        self.parsed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let mut request = documents.prepare(Request::new("{ unclosed")).expect("passed on");
        assert!(request.parsed_query().is_err());
    }
}
