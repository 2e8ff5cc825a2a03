use super::*;

const OK: &str = r#"version = 1
[[tables]]
name = "companies"
source = { type = "node", label = "Company" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "name", type = "varchar(100)", required = true },
]
[[tables]]
name = "deals"
source = { type = "node", label = "Deal" }
primary_key = ["id"]
columns = [
  { name = "id", type = "bigint", from = "_id" },
  { name = "company_id", type = "bigint", from = "companyId" },
]
[[tables.foreign_keys]]
columns = ["company_id"]
references = "companies"
"#;

fn error_of(text: &str) -> String {
    parse(text, "spec.toml").unwrap_err().to_string()
}

#[test]
fn a_valid_spec_resolves_references() {
    let m = parse(OK, "spec.toml").unwrap();
    assert_eq!(m.tables.len(), 2);
    let fk = &m.tables[1].foreign_keys[0];
    assert_eq!(
        (fk.columns.clone(), fk.parent, fk.parent_columns.clone()),
        (vec![1], 0, vec![0])
    );
    assert_eq!(
        m.tables[1].columns[1].from,
        FieldRef::Property("companyId".into())
    );
    assert_eq!(m.tables[0].columns[1].ty, SqlType::Varchar(100));
}

#[test]
fn unknown_table_in_a_foreign_key_points_to_its_line() {
    let e = error_of(&OK.replace("references = \"companies\"", "references = \"compnies\""));
    assert!(
        e.starts_with("spec.toml:20:14: foreign key references unknown table `compnies`"),
        "{e}"
    );
    assert!(e.contains("companies, deals"), "{e}");
}

#[test]
fn a_date_format_chrono_cannot_read_points_to_the_transform() {
    let spec = OK.replace(
        r#"{ name = "name", type = "varchar(100)", required = true },"#,
        r#"{ name = "name", type = "varchar(100)", required = true },
  { name = "founded", type = "date", transforms = [{ parse_date = ["%Y/%m/%d", "%Y-%Q"] }] },"#,
    );
    let e = error_of(&spec);
    assert!(e.starts_with("spec.toml:9:"), "{e}");
    assert!(e.contains("`%Y-%Q` is not a chrono format"), "{e}");
}

#[test]
fn unknown_type_points_to_the_column() {
    let e = error_of(&OK.replace("type = \"varchar(100)\"", "type = \"string\""));
    assert!(
        e.starts_with("spec.toml:8:27: unknown column type `string`"),
        "{e}"
    );
}

#[test]
fn syntax_errors_and_unknown_keys_point_to_the_line() {
    let e = error_of(&OK.replace("primary_key = [\"id\"]\ncolumns = [\n  { name = \"id\", type = \"bigint\", from = \"_id\" },\n  { name = \"company_id\"", "primary_key = [\"id\"]\nkolumns = 1\ncolumns = [\n  { name = \"id\", type = \"bigint\", from = \"_id\" },\n  { name = \"company_id\""));
    assert!(e.starts_with("spec.toml:14:1:"), "{e}");
    assert!(e.contains("kolumns"), "{e}");
    let e = error_of("version = 1\n[[tables]\n");
    assert!(e.starts_with("spec.toml:2:"), "{e}");
}

#[test]
fn other_validation_errors() {
    assert!(error_of(&OK.replace("version = 1", "version = 2"))
        .contains("spec.toml:1:11: unsupported spec version 2"));
    assert!(
        error_of(&OK.replace("columns = [\"company_id\"]", "columns = [\"company\"]"))
            .contains("table `deals` has no column `company`")
    );
    assert!(
        error_of(&OK.replace("name = \"deals\"", "name = \"companies\""))
            .contains("spec.toml:11:8: table `companies` is defined twice")
    );
    assert!(error_of(&OK.replace(
        "{ name = \"company_id\", type = \"bigint\"",
        "{ name = \"company_id\", type = \"int\""
    ))
    .contains("must have the type of `companies.id`"));
    assert!(error_of(
        &OK.replace("required = true }", "required = true, default = \"x\" }")
            .replace("varchar(100)", "int")
    )
    .contains("default `x` is not a valid int"));
    assert!(
        error_of(&OK.replace("from = \"companyId\"", "from = \"_start\""))
            .contains("exists only for relationship sources")
    );
    assert!(error_of(&OK.replace("primary_key = [\"id\"]\ncolumns = [\n  { name = \"id\", type = \"bigint\", from = \"_id\" },\n  { name = \"name\"", "primary_key = []\ncolumns = [\n  { name = \"id\", type = \"bigint\", from = \"_id\" },\n  { name = \"name\"")).contains("needs a primary_key"));
    assert!(error_of(&OK.replace(
        "version = 1",
        "version = 1\n[settings]\nmax_reject_share = 2.0"
    ))
    .contains("spec.toml:3:20: max_reject_share must be between 0 and 1"));
    assert!(error_of(&OK.replace(
        "version = 1",
        "version = 1\n[settings]\nparallel_tables = 0"
    ))
    .contains("spec.toml:3:19: parallel_tables must be between 1 and 64"));
    assert!(
        error_of(&OK.replace("name = \"deals\"", "name = \"deals-2\""))
            .contains("must be 1-48 ASCII letters")
    );
}

#[test]
fn the_example_spec_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/migration/sales.toml");
    let m = load(&path).unwrap();
    assert_eq!(m.tables.len(), 8);
    let plan = crate::plan::plan(&m).unwrap();
    // The spec document shows the new rules of a column.
    let doc = crate::plan::spec_document(&m, &plan, "sales.toml");
    assert!(
        doc.contains("| `amount_yen` | bigint unsigned | `amount` (renamed) | no | - | - | - | max 100000000000; yen;"),
        "{doc}"
    );
    // And where a relationship column's value comes from, with its rejects.
    assert!(
        doc.contains("| `company_id` | bigint | the other end's `_id` of `(row)-[:FOR_COMPANY]->(:Company)` | yes |"),
        "{doc}"
    );
    assert!(
        doc.contains("Relationship column `company_id`: the id of the end node of the row's outgoing `FOR_COMPANY` relationship to a `:Company` node (`(row)-[:FOR_COMPANY]->(:Company)`). A row with none is rejected (`missing_relationship`); a row with two or more is rejected (`multiple_relationships`); a row whose end node has no accepted row in `companies` is rejected (`dangling_foreign_key`)."),
        "{doc}"
    );
    let runbook = crate::plan::runbook(&m, &plan, "sales.toml");
    assert!(
        runbook.contains("`activity_logs` first joins its relationship columns on disk (`deal_id` from `(row)-[:ON_DEAL]->(:Deal)`)"),
        "{runbook}"
    );
}

const SOURCES: &str = r#"version = 1
[sources.crm]
type = "dynamodb"
endpoint_url = "${AWS_ENDPOINT_URL:-}"
segments = 4
[sources.search]
type = "opensearch"
url = "${OPENSEARCH_URL}"
username = "reader"
password_env = "SEARCH_PASSWORD"
[sources.app]
type = "embedded"
data_dir = "./data"

[[tables]]
name = "deals"
source = { type = "dynamodb", from = "crm", table = "LegacyDeals" }
primary_key = ["id"]
columns = [{ name = "id", type = "varchar(64)", from = "_id" }]
[[tables]]
name = "activity"
source = { type = "opensearch", from = "search", index = "activity", query = '{"term": {"kind": "call"}}' }
primary_key = ["id"]
columns = [{ name = "id", type = "varchar(64)", from = "_id" }]
[[tables]]
name = "app_deals"
source = { type = "embedded", from = "app", item_type = "deal" }
primary_key = ["id"]
columns = [{ name = "id", type = "varchar(64)", from = "_id" }]
[[tables]]
name = "regions"
source = { type = "cypher", query = "MATCH (c:Company) WHERE id(c) > $after RETURN id(c) AS id ORDER BY id LIMIT $limit" }
primary_key = ["id"]
columns = [{ name = "id", type = "bigint", from = "_id" }]
"#;

#[test]
fn named_sources_validate_without_the_environment() {
    let m = parse(SOURCES, "spec.toml").unwrap();
    assert_eq!(m.sources.len(), 3);
    assert_eq!(
        m.tables[0].source,
        SourceKind::Dynamodb {
            from: "crm".into(),
            table: "LegacyDeals".into()
        }
    );
    assert_eq!(
        m.tables[1].source,
        SourceKind::Opensearch {
            from: "search".into(),
            index: "activity".into(),
            query: Some(r#"{"term":{"kind":"call"}}"#.into())
        }
    );
    assert_eq!(
        m.tables[3].source,
        SourceKind::Cypher {
            query:
                "MATCH (c:Company) WHERE id(c) > $after RETURN id(c) AS id ORDER BY id LIMIT $limit"
                    .into(),
            paged: true
        }
    );
    match &m.sources["search"] {
        Connection::Opensearch(o) => {
            assert_eq!(o.url, "${OPENSEARCH_URL}", "resolved only when connecting")
        }
        other => panic!("{other:?}"),
    }
    // The documents describe the sources, without resolving anything.
    let plan = crate::plan::plan(&m).unwrap();
    let doc = crate::plan::spec_document(&m, &plan, "spec.toml");
    assert!(doc.contains("DynamoDB table `LegacyDeals`"), "{doc}");
    assert!(doc.contains("password from `$SEARCH_PASSWORD`"), "{doc}");
    let runbook = crate::plan::runbook(&m, &plan, "spec.toml");
    assert!(runbook.contains("--source bolt://HOST:PORT"), "{runbook}");
    assert!(runbook.contains("`OPENSEARCH_URL`"), "{runbook}");
    assert!(runbook.contains("`SEARCH_PASSWORD`"), "{runbook}");
}

#[test]
fn source_errors_point_to_the_table_source() {
    let e = error_of(&SOURCES.replace("from = \"crm\"", "from = \"crn\""));
    assert!(
        e.starts_with("spec.toml:17:10: unknown source `crn`"),
        "{e}"
    );
    assert!(e.contains("defined dynamodb sources: crm"), "{e}");
    let e = error_of(&SOURCES.replace("from = \"app\"", "from = \"crm\""));
    assert!(
        e.contains("source `crm` is a dynamodb connection, but this table reads it as embedded"),
        "{e}"
    );
    let e = error_of(&SOURCES.replace(", table = \"LegacyDeals\"", ""));
    assert!(e.starts_with("spec.toml:17:"), "{e}");
    assert!(e.contains("missing field `table`"), "{e}");
    let e = error_of(&SOURCES.replace("'{\"term\": {\"kind\": \"call\"}}'", "'{oops'"));
    assert!(e.contains("`query` is not JSON"), "{e}");
    let e = error_of(&SOURCES.replace("LIMIT $limit", "LIMIT 10"));
    assert!(e.contains("both `$after` and `$limit`"), "{e}");
    let e = error_of(&SOURCES.replace("${OPENSEARCH_URL}", "${OPENSEARCH_URL"));
    assert!(e.starts_with("spec.toml:6:1: sources.search.url:"), "{e}");
    let e = error_of(&SOURCES.replace("segments = 4", "segments = 0"));
    assert!(e.contains("segments must be between 1 and 256"), "{e}");
    let e = error_of(&SOURCES.replace(
        "password_env = \"SEARCH_PASSWORD\"",
        "password = \"hunter2\"",
    ));
    assert!(e.contains("unknown field `password`"), "{e}");
    let e = error_of(&SOURCES.replace(
        "columns = [{ name = \"id\", type = \"varchar(64)\", from = \"_id\" }]\n[[tables]]\nname = \"activity\"",
        "columns = [{ name = \"id\", type = \"varchar(64)\", from = \"_start\" }]\n[[tables]]\nname = \"activity\"",
    ));
    assert!(
        e.contains("`_start` exists only for relationship sources"),
        "{e}"
    );
}

#[test]
fn unsigned_types_and_bounds_are_read_and_checked() {
    let spec = OK.replace(
        r#"{ name = "company_id", type = "bigint", from = "companyId" },"#,
        r#"{ name = "company_id", type = "bigint", from = "companyId" },
  { name = "amount", type = "bigint  UNSIGNED", min = 1, max = 1000000 },
  { name = "seats", type = "int unsigned" },"#,
    );
    let m = parse(&spec, "spec.toml").unwrap();
    let amount = &m.tables[1].columns[2];
    assert_eq!(
        (amount.ty, amount.min, amount.max),
        (SqlType::BigIntUnsigned, Some(1), Some(1_000_000))
    );
    assert_eq!(amount.ty.sql(), "BIGINT UNSIGNED");
    assert_eq!(m.tables[1].columns[3].ty, SqlType::IntUnsigned);
    let bad = |from: &str, to: &str| error_of(&spec.replace(from, to));
    assert!(bad("min = 1,", "min = 2000000,").contains("min 2000000 is greater than max 1000000"));
    assert!(bad("min = 1,", "min = -1,").contains("-1 is outside what bigint unsigned holds"));
    let e = bad(
        r#"{ name = "seats", type = "int unsigned" }"#,
        r#"{ name = "seats", type = "varchar(3)", max = 3 }"#,
    );
    assert!(e.contains("`min` / `max` apply to integer columns"), "{e}");
    let e = bad("max = 1000000 }", "max = 1000000, default = \"0\" }");
    assert!(e.contains("breaks the bounds"), "{e}");
}

#[test]
fn a_relationship_column_reads_its_relationship() {
    let rel =
        r#"from_relationship = { type = "FOR_COMPANY", direction = "out", label = "Company" }"#;
    let m = parse(&OK.replace(r#"from = "companyId""#, rel), "spec.toml").unwrap();
    let deals = &m.tables[1];
    let r = RelationshipRef {
        rel_type: "FOR_COMPANY".into(),
        direction: Direction::Out,
        label: Some("Company".into()),
    };
    assert_eq!(deals.columns[1].from, FieldRef::Relationship(r.clone()));
    assert_eq!(deals.relationship_columns(), vec![(1, &r)]);
    assert_eq!(r.pattern(), "(row)-[:FOR_COMPANY]->(:Company)");
    // The relationship type is read by the partition step though no table reads it.
    assert!(crate::source::partition_keys(&m)
        .contains(&crate::source::PartitionKey::RelType("FOR_COMPANY".into())));
    let incoming = parse(
        &OK.replace(
            r#"from = "companyId""#,
            r#"from_relationship = { type = "HAS_DEAL", direction = "in" }"#,
        ),
        "spec.toml",
    )
    .unwrap();
    assert_eq!(
        incoming.tables[1].columns[1].from.to_string(),
        "(row)<-[:HAS_DEAL]-()"
    );
}

#[test]
fn a_relationship_column_is_checked_where_it_is_written() {
    let with = |from: &str| error_of(&OK.replace(r#"from = "companyId""#, from));
    let e = with(r#"from = "companyId", from_relationship = { type = "T", direction = "out" }"#);
    assert!(
        e.starts_with(
            "spec.toml:16:50: column `company_id` has both `from` and `from_relationship`"
        ),
        "{e}"
    );
    let e = with(r#"from_relationship = { type = "T", direction = "up" }"#);
    assert!(
        e.contains("unknown variant `up`, expected `out` or `in`"),
        "{e}"
    );
    let e = with(r#"from_relationship = { type = "", direction = "in" }"#);
    assert!(e.contains("needs a non-empty relationship `type`"), "{e}");
    let e = with(r#"from_relationship = { type = "T", direction = "in", labels = "X" }"#);
    assert!(e.contains("unknown field `labels`"), "{e}");
    // Only node tables have relationships of their own.
    let spec = r#"version = 1
[[tables]]
name = "links"
source = { type = "relationship", rel_type = "L" }
primary_key = ["a"]
columns = [
  { name = "a", type = "bigint", from_relationship = { type = "T", direction = "out" } },
]
"#;
    let e = error_of(spec);
    assert!(
        e.starts_with("spec.toml:7:54: `from_relationship` is for node tables; table `links` reads relationships"),
        "{e}"
    );
}
