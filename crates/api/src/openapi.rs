//! The OpenAPI document, generated from the handlers' annotations and the types' schemas.

use crate::routes::{activities, companies, deals, ops, sales_lists};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tsunagu",
        description = "Sales-activity API: activities, companies, deals, tags and sales lists, searched through the replicated index. Every write returns a `consistency_token`; pass it to a search to read your own write."
    ),
    paths(
        activities::search,
        activities::aggregate,
        activities::record,
        activities::get,
        activities::edit,
        activities::delete,
        companies::create,
        companies::get,
        companies::edit,
        companies::search,
        deals::create,
        deals::get,
        deals::edit,
        deals::tag,
        deals::untag,
        deals::tags,
        deals::search,
        sales_lists::create,
        sales_lists::get,
        sales_lists::add_deals,
        sales_lists::list,
        ops::pipeline_status,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A tenant token from `tsunagu tenant create`"))
                    .build(),
            ),
        );
    }
}

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
