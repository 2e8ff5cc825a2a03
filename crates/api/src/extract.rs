//! Request extractors whose failures use the common error body: [`Auth`] (the tenant of
//! the bearer token), [`StrictJson`] (unknown fields rejected, errors name the field) and
//! [`Params`] (query strings, same rules).

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, StatusCode};
use serde::de::DeserializeOwned;
use tsunagu_service::tenants::Tenant;
use tsunagu_service::{FieldIssue, TenantId};

/// The tenant the request acts for.
pub struct Auth(pub TenantId);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AuthTenant(tenant) = AuthTenant::from_request_parts(parts, state).await?;
        Ok(Auth(TenantId(tenant.id)))
    }
}

/// The tenant the request acts for, with its settings (its time zone).
pub struct AuthTenant(pub Tenant);

impl FromRequestParts<AppState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))?;
        let token = value.to_str().ok().and_then(bearer_token).ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
        match state.tenants.authenticate(token).await {
            Ok(Some(tenant)) => Ok(AuthTenant(tenant)),
            Ok(None) => Err(ApiError::unauthorized("unknown or revoked token")),
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("checking the token failed: {e}"),
            )),
        }
    }
}

/// The token of an `Authorization` value `Bearer <token>`. The scheme is matched
/// case-insensitively (RFC 9110 §11.1: `bearer` and `BEARER` are `Bearer`), and any run of
/// spaces may separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JSON body decoded strictly: unknown fields are rejected, and every decoding error
/// names the field (422); malformed JSON is 400; another content type 415.
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim() == "application/json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "payload_too_large", e.body_text()))?;
        decode_json(&bytes).map(StrictJson)
    }
}

fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let syntax = |inner: &serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not valid JSON: {inner}"),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return syntax(inner);
        }
        let path = e.path().to_string();
        ApiError::invalid(vec![FieldIssue {
            field: if path == "." { "body".into() } else { path },
            message: strip_position(&inner.to_string()),
        }])
    })?;
    de.end().map_err(|e| syntax(&e))?;
    Ok(value)
}

/// serde_json appends " at line 1 column 42"; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Query-string parameters decoded strictly (unknown parameters rejected, 422 naming the
/// parameter).
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize::<_, T>(de)
            .map(Params)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::invalid(vec![FieldIssue {
                    field: if path == "." { "query".into() } else { path },
                    message: e.inner().to_string(),
                }])
            })
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    /// Issue 18: `bearer <token>` was refused.
    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer tsu_x",
            "bearer tsu_x",
            "BEARER tsu_x",
            " bEaReR   tsu_x ",
        ] {
            assert_eq!(bearer_token(value), Some("tsu_x"), "{value:?}");
        }
        for value in [
            "Basic tsu_x",
            "Bearertsu_x",
            "Bearer ",
            "Bearer",
            "tsu_x",
            "",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
