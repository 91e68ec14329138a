//! AWS Signature Version 4 for the few S3 requests object_store has no call for
//! (Object Lock's `?retention`, `lock.rs`). object_store signs its own requests
//! and does not lend its signer; headers added to its client are sent unsigned,
//! which S3 refuses for any `x-amz-*` header. So this signs a whole request: every
//! header it is given, the query, and the body's SHA-256.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The access key that signs, and the session token of temporary credentials.
pub struct Keys<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub token: Option<&'a str>,
}

/// One request to sign: `path` already percent-encoded as it is sent (S3 signs it
/// as it is, without encoding it again), `query` already in canonical form
/// (`retention=`), `headers` lowercase names with their values, `host` among them.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

/// `x-amz-date`'s form of a UTC time.
pub fn amz_date(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The headers to send: the request's, plus `x-amz-date`, `x-amz-content-sha256`,
/// the session token if any, and `authorization`.
pub fn sign(
    mut req: Request,
    keys: &Keys,
    region: &str,
    at: time::OffsetDateTime,
) -> Vec<(String, String)> {
    let date_time = amz_date(at);
    let date = &date_time[..8];
    req.headers.push((
        "x-amz-content-sha256".into(),
        hex::encode(Sha256::digest(req.body)),
    ));
    req.headers.push(("x-amz-date".into(), date_time.clone()));
    if let Some(token) = keys.token {
        req.headers
            .push(("x-amz-security-token".into(), token.to_string()));
    }
    req.headers.sort();
    let signed: Vec<&str> = req.headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let mut canonical = format!("{}\n{}\n{}\n", req.method, req.path, req.query);
    for (k, v) in &req.headers {
        canonical.push_str(&format!("{k}:{}\n", v.trim()));
    }
    canonical.push_str(&format!(
        "\n{signed}\n{}",
        hex::encode(Sha256::digest(req.body))
    ));
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", keys.secret).as_bytes(), date.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    req.headers.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            keys.id
        ),
    ));
    req.headers
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected value was computed by botocore's `S3SigV4Auth` (an independent
    /// implementation, the one the AWS CLI uses) for the same request.
    #[test]
    fn a_retention_request_is_signed_as_botocore_signs_it() {
        let body = br#"<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>GOVERNANCE</Mode><RetainUntilDate>2026-12-08T10:00:00Z</RetainUntilDate></Retention>"#;
        let headers = sign(
            Request {
                method: "PUT",
                path: "/my-bucket/pre/job/packs/0123.tar.zst.age",
                query: "retention=",
                headers: vec![
                    ("host".into(), "127.0.0.1:9000".into()),
                    ("content-md5".into(), "OFRviWweMIyaUeBQVBfswQ==".into()),
                ],
                body,
            },
            &Keys {
                id: "AKIDEXAMPLE",
                secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                token: None,
            },
            "us-east-1",
            time::macros::datetime!(2026-12-07 10:14:28 UTC),
        );
        let auth = headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            auth,
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/s3/aws4_request, \
                 SignedHeaders=content-md5;host;x-amz-content-sha256;x-amz-date, \
                 Signature=754317ce3ced879377453e703877b17f3bab29567e15bbf1f1fc6f262315cbbb"
            )
        );
    }
}
