//! Chunks in an S3 bucket, through the official SDK.
//!
//! The client takes its region, credentials and endpoint from the SDK's standard chain
//! (environment, `~/.aws/config` profiles, web identity, instance role; `AWS_ENDPOINT_URL`
//! is honoured), like the AWS adapters of tsunagu. When an endpoint is set (a local peer
//! such as moto, MinIO, a VPC endpoint) path-style addressing is used, since such
//! endpoints rarely resolve `BUCKET.host`. Without any region in the chain, `us-east-1`.
//!
//! Integrity: each upload carries the SDK's default request checksum (the server refuses
//! a body that does not match it) and the file's MD5 as object metadata, which the
//! manifest lists and which lets a resumed export skip a chunk already there.

use super::{Published, S3Location};
use crate::error::{Error, Result};
use crate::export::{chunk_path, ChunkReady, ExportStats};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use md5::{Digest, Md5};
use std::io::Read;
use std::path::PathBuf;
use tokio::io::AsyncReadExt;

/// The metadata key holding a chunk's hex MD5 (`x-amz-meta-md5`).
const MD5_META: &str = "md5";

/// A bucket and prefix holding a run's chunks.
pub struct S3Chunks {
    client: Client,
    location: S3Location,
    /// The endpoint override, for "cannot reach" messages.
    endpoint: Option<String>,
}

/// How long one request may take: a chunk upload is tens of MB.
const ATTEMPT_TIMEOUT_MS: u64 = 300_000;

/// An S3 client from the standard chain (see the module docs), built like every AWS
/// client of tsunagu ([`tsunagu_aws::sdk_config`]: retries with backoff, timeouts), and
/// the endpoint override if there is one.
pub async fn client() -> Result<(Client, Option<String>)> {
    let region = tsunagu_aws::chain_region(None)
        .await
        .unwrap_or_else(|| "us-east-1".to_string());
    let mut aws = tsunagu_aws::AwsConfig::new(region);
    aws.attempt_timeout_ms = ATTEMPT_TIMEOUT_MS;
    let sdk = tsunagu_aws::sdk_config(&aws)
        .await
        .map_err(|e| Error::ChunkStore(format!("configuration: {e}")))?;
    let endpoint = sdk.endpoint_url().map(str::to_string);
    let mut config = aws_sdk_s3::config::Builder::from(&sdk);
    if endpoint.is_some() {
        config = config.force_path_style(true);
    }
    Ok((Client::from_conf(config.build()), endpoint))
}

impl S3Chunks {
    /// Builds the client from the standard chain and checks the bucket is reachable.
    pub async fn connect(location: S3Location) -> Result<S3Chunks> {
        let (client, endpoint) = client().await?;
        let store = S3Chunks {
            client,
            location,
            endpoint,
        };
        store
            .client
            .head_bucket()
            .bucket(&store.location.bucket)
            .send()
            .await
            .map_err(|e| store.fail("checking the bucket", None, &e))?;
        Ok(store)
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    fn key(&self, table: &str, index: u32) -> String {
        self.location.key(table, &chunk_file(index))
    }

    /// Uploads a finished chunk file unless the same bytes are already there, then
    /// removes the local copy.
    pub async fn upload(&self, table: &str, chunk: &ChunkReady) -> Result<Published> {
        let key = self.key(table, chunk.index);
        let (md5, bytes) = file_md5(&chunk.path).await?;
        let present = self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .send()
            .await
            .ok()
            .and_then(|h| h.metadata().and_then(|m| m.get(MD5_META)).cloned());
        if present.as_deref() != Some(md5.as_str()) {
            let body = ByteStream::from_path(&chunk.path)
                .await
                .map_err(|e| Error::io(&chunk.path, std::io::Error::other(e)))?;
            self.client
                .put_object()
                .bucket(&self.location.bucket)
                .key(&key)
                .content_type("text/csv; charset=utf-8")
                .metadata(MD5_META, &md5)
                .metadata("rows", chunk.rows.to_string())
                .body(body)
                .send()
                .await
                .map_err(|e| self.fail("uploading a chunk", Some(&key), &e))?;
        }
        tokio::fs::remove_file(&chunk.path)
            .await
            .map_err(|e| Error::io(&chunk.path, e))?;
        Ok(Published {
            index: chunk.index,
            rows: chunk.rows,
            bytes,
            md5: Some(md5),
            key: Some(key),
        })
    }

    /// Writes `PREFIX/<table>/manifest.json`: the table's totals and its chunks.
    pub async fn write_manifest(
        &self,
        table: &str,
        stats: &ExportStats,
        chunks: &[Published],
    ) -> Result<()> {
        let key = self.location.key(table, "manifest.json");
        let manifest = serde_json::json!({
            "table": table,
            "rows": stats.written,
            "rejected": stats.rejected,
            "checksum": crate::verify::hex(stats.checksum),
            "format": crate::export::csv::LOAD_DATA_FORMAT,
            "chunks": chunks,
        });
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Other(format!("manifest of `{table}`: {e}")))?;
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.fail("writing the manifest", Some(&key), &e))?;
        Ok(())
    }

    /// Deletes every object under `PREFIX/<table>/`.
    pub async fn delete_table(&self, table: &str) -> Result<()> {
        let prefix = self.location.key(table, "");
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail("listing old chunks", Some(&prefix), &e))?;
            for key in page.contents().iter().filter_map(|o| o.key()) {
                self.client
                    .delete_object()
                    .bucket(&self.location.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| self.fail("deleting an old chunk", Some(key), &e))?;
            }
        }
        Ok(())
    }

    async fn body(&self, table: &str, index: u32) -> Result<ByteStream> {
        let key = self.key(table, index);
        let out = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.fail("reading a chunk", Some(&key), &e))?;
        Ok(out.body)
    }

    /// The chunk's bytes as they arrive, for `LOAD DATA LOCAL INFILE`.
    pub async fn stream(&self, table: &str, index: u32) -> Result<mysql_async::InfileData> {
        let body = self.body(table, index).await?;
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            body.into_async_read(),
            1 << 16,
        )))
    }

    /// A blocking reader of the chunk (from a blocking thread).
    pub fn reader(
        &self,
        runtime: &tokio::runtime::Handle,
        table: &str,
        index: u32,
    ) -> Result<(PathBuf, Box<dyn Read + Send>)> {
        let body = runtime.block_on(self.body(table, index))?;
        let reader = Box::pin(body.into_async_read());
        Ok((
            PathBuf::from(format!("{}/{}", self.location, chunk_file(index))),
            Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                reader,
                runtime.clone(),
            )),
        ))
    }

    /// An SDK error as a message saying what to fix. The SDK never puts credentials in
    /// its errors, and neither does this.
    fn fail<E>(&self, doing: &str, key: Option<&str>, error: &SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let bucket = &self.location.bucket;
        let object = match key {
            Some(k) => format!("s3://{bucket}/{k}"),
            None => format!("s3://{bucket}"),
        };
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code().unwrap_or("");
        let detail = DisplayErrorContext(error).to_string();
        let missing =
            matches!(code, "NoSuchBucket" | "NoSuchKey" | "NotFound") || status == Some(404);
        let denied = matches!(
            code,
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden"
        ) || status == Some(403);
        let elsewhere = matches!(code, "PermanentRedirect" | "AuthorizationHeaderMalformed")
            || status == Some(301);
        let message = match error {
            SdkError::ServiceError(_) if missing && (key.is_none() || code == "NoSuchBucket") => format!(
                "bucket `{bucket}` does not exist; create it (aws s3 mb s3://{bucket}) or fix the chunk location"
            ),
            SdkError::ServiceError(_) if missing => format!(
                "{object} is missing ({doing}); the chunks were removed since they were exported: run again without --resume"
            ),
            SdkError::ServiceError(_) if denied => format!(
                "access denied {doing} ({object}): the credentials from the AWS chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, instance role) need s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on this bucket"
            ),
            SdkError::ServiceError(_) if elsewhere => format!(
                "bucket `{bucket}` is in another region than the one configured; set AWS_REGION to the bucket's region"
            ),
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
                if detail.contains("credentials") || detail.contains("identity") =>
            {
                format!("no AWS credentials found {doing}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an instance role ({detail})")
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
                let endpoint = self.endpoint.as_deref().unwrap_or("the AWS S3 endpoint");
                format!(
                    "cannot reach {endpoint} {doing} ({object}): {detail}; check AWS_ENDPOINT_URL, AWS_REGION and the network"
                )
            }
            _ => format!("{doing} ({object}) failed: {detail}"),
        };
        Error::ChunkStore(message)
    }
}

fn chunk_file(index: u32) -> String {
    chunk_path(std::path::Path::new(""), index)
        .display()
        .to_string()
}

/// The hex MD5 and the size of a file, read in blocks.
async fn file_md5(path: &std::path::Path) -> Result<(String, u64)> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, total))
}
