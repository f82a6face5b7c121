//! The Regions CloudTrail runs in. A call signed for any other Region is refused, so a made-up
//! Region cannot open Event History scopes or digest chains that nobody will ever read.

/// Every Region of the `aws`, `aws-cn` and `aws-us-gov` partitions that CloudTrail serves, as
/// botocore's endpoint data lists them for `cloudtrail` (checked against
/// `botocore/data/endpoints.json` of August 2026, FIPS endpoints left out). The isolated
/// partitions (`aws-iso*`, `aws-eusc`) are left out too: OpenTrail's ARNs are `arn:aws:`.
/// Sorted, for the binary search.
pub const CLOUDTRAIL_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// Whether CloudTrail serves `region`.
pub fn is_cloudtrail_region(region: &str) -> bool {
    CLOUDTRAIL_REGIONS.binary_search(&region).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_for_binary_search() {
        assert!(CLOUDTRAIL_REGIONS.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(is_cloudtrail_region("us-east-1") && is_cloudtrail_region("ap-southeast-2"));
        assert!(!is_cloudtrail_region("sagov-westsouth-1r") && !is_cloudtrail_region("us-east-9"));
    }
}
