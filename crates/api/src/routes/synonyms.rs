//! `/api/v1/synonyms`: the caller's tenant's synonym list (groups of terms a memo search
//! treats as one), read and replaced whole. Searches read it on each request with `q`, so
//! a change applies to the next search, without reindexing.

use crate::error::ApiError;
use crate::extract::{Auth, StrictJson};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tsunagu_domain::search::ActivityQuery;
use tsunagu_domain::synonyms::Synonyms;
use tsunagu_service::tenants::TenantError;

/// A tenant's synonyms: groups of equivalent terms. A memo search for any term of a group
/// (`q=MTG`) finds memos with any of them (`MTG`, `ミーティング` or `打ち合わせ`); `-MTG`
/// excludes them all. Terms match as the search matches text (full/half width, case,
/// hiragana/katakana folded: `ｍｔｇ` is `MTG`). At most 200 groups of 2 to 10 terms; a
/// term is one search word of at most 40 characters: no space, no quote, no leading `-`,
/// not `OR`, with a letter, digit, kana or kanji; a term is in one group only.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SynonymList {
    #[schema(example = json!([["MTG", "ミーティング", "打ち合わせ"], ["見積", "見積もり"]]))]
    pub groups: Vec<Vec<String>>,
}

impl From<Synonyms> for SynonymList {
    fn from(synonyms: Synonyms) -> Self {
        Self {
            groups: synonyms.groups().to_vec(),
        }
    }
}

/// The account's synonym list (empty groups when none was set).
#[utoipa::path(get, operation_id = "get_synonyms", path = "/api/v1/synonyms", tag = "synonyms",
    security(("bearer" = [])),
    responses((status = 200, body = SynonymList)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(tenant): Auth,
) -> Result<Json<SynonymList>, ApiError> {
    let synonyms = state.tenants.synonyms(&tenant.0).await?;
    Ok(Json(synonyms.into()))
}

/// Replace the account's whole synonym list (`{"groups": []}` removes it); answers the
/// list as stored (terms trimmed). A refused list (422 on `groups`, naming the group and
/// the term) changes nothing.
#[utoipa::path(put, operation_id = "set_synonyms", path = "/api/v1/synonyms", tag = "synonyms",
    security(("bearer" = [])), request_body = SynonymList,
    responses((status = 200, body = SynonymList)))]
pub async fn set(
    State(state): State<AppState>,
    Auth(tenant): Auth,
    StrictJson(body): StrictJson<SynonymList>,
) -> Result<Json<SynonymList>, ApiError> {
    let synonyms = Synonyms::new(body.groups).map_err(TenantError::from)?;
    let stored = state.tenants.set_synonyms(&tenant.0, &synonyms).await?;
    Ok(Json(stored.into()))
}

/// Gives a memo search the tenant's synonyms (read only when it has text).
pub(crate) async fn apply(
    state: &AppState,
    tenant_id: &str,
    query: &mut ActivityQuery,
) -> Result<(), ApiError> {
    if query.text.is_some() {
        query.synonyms = state.tenants.synonyms(tenant_id).await?;
    }
    Ok(())
}
