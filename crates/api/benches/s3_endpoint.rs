//! S3 endpoint throughput on small objects: PutObject and GetObject of 1 KiB objects through the
//! full HTTP stack (SigV4 check, audited and recorded in the journal), driven by aws-sdk-s3 with
//! 8 concurrent clients. Run: `cargo bench -p opentrail-api --bench s3_endpoint`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use opentrail_service::{Config, Credentials, OpenTrail};

const OBJECTS_PER_WORKER: usize = 500;
const WORKERS: usize = 8;

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn phase<F, Fut>(name: &str, client: &aws_sdk_s3::Client, operation: F)
where
    F: Fn(aws_sdk_s3::Client, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let (client, operation) = (client.clone(), operation.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(OBJECTS_PER_WORKER);
            for i in 0..OBJECTS_PER_WORKER {
                let call_started = Instant::now();
                operation(client.clone(), format!("objects/{worker}/{i}")).await;
                latencies.push(call_started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{name}: {} calls in {:.2} s: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 50),
        percentile(&latencies, 99)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let folder = tempfile::tempdir().unwrap();
        let credentials = Credentials::from_config(&Config::development()).unwrap();
        let service = OpenTrail::open(folder.path(), credentials).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(opentrail_api::serve(
            listener,
            Arc::clone(&service),
            opentrail_api::HttpLimits::default(),
            std::future::pending(),
        ));
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "bench"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        let client = aws_sdk_s3::Client::from_conf(config);
        client.create_bucket().bucket("bench").send().await.unwrap();
        let body = vec![b'x'; 1024];
        phase("PutObject 1 KiB", &client, move |client, key| {
            let body = body.clone();
            async move {
                client.put_object().bucket("bench").key(key).body(ByteStream::from(body)).send().await.unwrap();
            }
        })
        .await;
        phase("GetObject 1 KiB", &client, |client, key| async move {
            let object = client.get_object().bucket("bench").key(key).send().await.unwrap();
            object.body.collect().await.unwrap();
        })
        .await;
    });
}
