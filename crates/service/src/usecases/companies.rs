//! Companies (取引先): create with the prefecture split from the address, read, edit,
//! search.

use super::{
    check_version, double_option, expect_version, new_id, page_limit, parse_cursor, Service,
    TenantId, Written,
};
use crate::error::ServiceError;
use crate::ports::Expect;
use serde::Deserialize;
use tsunagu_domain::prefecture::{canonical, split_address};
use tsunagu_domain::search::{RecordKind, RecordQuery};
use tsunagu_domain::{Company, Entity, Version};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewCompany {
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = r"\S")
    )]
    pub name: String,
    /// The full address. Its prefecture is split off into `prefecture` ("東京都新宿区…",
    /// with or without 都/道/府/県, after an optional postal code).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub address: String,
    /// Needed only when the address does not start with the prefecture.
    #[serde(default)]
    pub prefecture: Option<String>,
    #[serde(default)]
    pub industry: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompanyPatch {
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = r"\S")
    )]
    pub name: Option<String>,
    /// A new full address (the prefecture is split off again).
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub prefecture: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub industry: Option<Option<String>>,
}

/// Filters of a company listing.
#[derive(Debug, Clone, Default)]
pub struct CompanySearch {
    pub prefectures: Vec<String>,
    pub industries: Vec<String>,
    pub text: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// The prefecture and the rest of an address, from the address and an optional explicit
/// prefecture that must agree with it: what create and edit store. Public so the
/// migration can assert that its `prefecture` / `strip_prefecture` transforms agree.
pub fn locate(
    address: &str,
    prefecture: Option<&str>,
) -> Result<(Option<String>, String), ServiceError> {
    let split = split_address(address);
    let explicit = match prefecture {
        None => None,
        Some(p) => Some(canonical(p).ok_or_else(|| {
            ServiceError::invalid(
                "prefecture",
                format!(
                    "{p:?} is not one of the 47 prefectures (for example 東京都, 大阪府, 北海道)"
                ),
            )
        })?),
    };
    match (explicit, split.prefecture) {
        (Some(e), Some(s)) if e != s => Err(ServiceError::invalid(
            "prefecture",
            format!("is {e} but the address starts with {s}"),
        )),
        (e, s) => Ok((e.or(s).map(str::to_string), split.rest)),
    }
}

impl Service {
    pub async fn create_company(
        &self,
        tenant: &TenantId,
        input: NewCompany,
    ) -> Result<Written<Company>, ServiceError> {
        let (prefecture, address) = locate(&input.address, input.prefecture.as_deref())?;
        let now = self.clock.now();
        let company = Company {
            id: new_id("co"),
            tenant_id: tenant.0.clone(),
            name: input.name.trim().to_string(),
            prefecture,
            address,
            industry: input.industry,
            created_at: now,
            updated_at: now,
        };
        company.validate()?;
        let id = company.id.clone();
        self.store(
            company.clone(),
            Entity::Company(company),
            Expect::Absent,
            "company",
            &id,
        )
        .await
    }

    pub async fn company(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(Version, Company), ServiceError> {
        self.load(tenant, &Company::key_for(id), "company", id, |e| match e {
            Entity::Company(c) => Some(c),
            _ => None,
        })
        .await
    }

    pub async fn edit_company(
        &self,
        tenant: &TenantId,
        id: &str,
        patch: CompanyPatch,
    ) -> Result<Written<Company>, ServiceError> {
        let expect = expect_version(patch.version)?;
        let (current, mut company) = self.company(tenant, id).await?;
        check_version("company", id, patch.version, current)?;
        if let Some(name) = patch.name {
            company.name = name.trim().to_string();
        }
        match (patch.address, patch.prefecture) {
            (Some(address), prefecture) => {
                let (p, rest) = locate(&address, prefecture.flatten().as_deref())?;
                company.prefecture = p;
                company.address = rest;
            }
            (None, Some(None)) => company.prefecture = None,
            (None, Some(Some(prefecture))) => {
                // The kept address must agree with the new prefecture, as on creation
                // ("大阪市北区…" is kept whole and names 大阪府).
                company.prefecture = locate(&company.address, Some(&prefecture))?.0;
            }
            (None, None) => {}
        }
        if let Some(industry) = patch.industry {
            company.industry = industry;
        }
        company.updated_at = self.clock.now().max(company.created_at);
        company.validate()?;
        self.store(
            company.clone(),
            Entity::Company(company),
            expect,
            "company",
            id,
        )
        .await
    }

    pub async fn search_companies(
        &self,
        tenant: &TenantId,
        search: CompanySearch,
        consistency_token: Option<&str>,
    ) -> Result<(Vec<(Version, Company)>, u64, Option<String>), ServiceError> {
        self.wait_for(tenant, consistency_token).await?;
        let mut query = RecordQuery::new(RecordKind::Company);
        query.tenant_id = Some(tenant.0.clone());
        query.prefectures = canonical_prefectures(&search.prefectures)?;
        query.industries = search.industries;
        query.text = super::check_text(search.text)?;
        query.limit = page_limit(search.limit)?;
        query.cursor = parse_cursor(search.cursor.as_deref())?;
        let page = self.index.search_records(&query).await?;
        let companies = page
            .hits
            .into_iter()
            .filter_map(|h| match h.entity {
                Entity::Company(c) => Some((h.version, c)),
                _ => None,
            })
            .collect();
        Ok((
            companies,
            page.total,
            page.next_cursor.map(|c| c.to_string()),
        ))
    }
}

/// Official names of prefectures given with or without their suffix.
pub(crate) fn canonical_prefectures(names: &[String]) -> Result<Vec<String>, ServiceError> {
    names
        .iter()
        .map(|p| {
            canonical(p).map(str::to_string).ok_or_else(|| {
                ServiceError::invalid(
                    "prefecture",
                    format!("{p:?} is not one of the 47 prefectures (for example 東京都, 大阪府, 北海道)"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefecture_comes_from_the_address_or_must_agree_with_it() {
        assert_eq!(
            locate("東京都新宿区西新宿2-8-1", None).unwrap(),
            (Some("東京都".into()), "新宿区西新宿2-8-1".into())
        );
        assert_eq!(
            locate("札幌市中央区", Some("北海道")).unwrap(),
            (Some("北海道".into()), "札幌市中央区".into())
        );
        assert_eq!(
            locate("大阪市北区", Some("大阪")).unwrap().0.as_deref(),
            Some("大阪府")
        );
        assert!(locate("東京都港区", Some("大阪府")).is_err());
        assert!(locate("", Some("ニューヨーク")).is_err());
    }
}
