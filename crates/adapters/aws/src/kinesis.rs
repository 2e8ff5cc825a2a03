//! stub
pub struct KinesisForwarder;
pub struct KinesisSource;
