//! stub
pub struct DynamoLeaseStore;
