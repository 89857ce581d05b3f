// Package awsiot writes what AWS IoT Core needs of a factory line's identities and checks that a
// device could connect with its own (the AWS X.509 provisioning whitepaper; the AWS IoT developer
// guide's bulk registration, provisioning templates and just-in-time provisioning).
//
// # Concepts
//
//   - Thing name: the device certificate's subject CN (1-128 of [a-zA-Z0-9:_-], AWS IoT's thing
//     name rule). The profile marks CN per-device; the ledger refuses a second key for one name.
//   - A CA per contract manufacturer: each manufacturer's line signs with its own CA (the bench's
//     DAK position), registered in the AWS account, so one manufacturer's CA can be revoked
//     without touching the others'. The profile's [aws_iot] section names the manufacturer; the
//     registered CA is the certificate whose subject Organization is that name.
//   - Bulk registration (StartThingRegistrationTask): newline-delimited JSON, one device a line,
//     the parameters of a provisioning template (ThingName, SerialNumber, CertificatePem).
//   - Just-in-time provisioning (JITP): a template attached to the registered CA whose parameters
//     come from the certificate's subject (AWS::IoT::Certificate::CommonName, ...).
//   - The mTLS check: a TLS server on 127.0.0.1 that requires a client certificate chaining to the
//     registered CA (crypto/tls, RequireAndVerifyClientCert), and a handshake with the device's
//     chain and key, as AWS IoT Core's first connection would do.
package awsiot
