// Package pki holds the product profile (device.conf), CSR checks,
// certificate issuance, chains and their verification for device
// provisioning (the FFS manufacturing and provisioning guides). It is pure Go; openssl serves only as an
// independent judge in the tests and in scripts/bench-issuance.sh.
//
// # Concepts
//
//   - Product profile: the device.conf the AVS console hands out, in OpenSSL
//     config syntax. Its [dn] section lists the subject a device CSR must
//     carry (device type id included, names from oid_section), and its
//     extension section (req_ext, the -extensions argument) says which X.509
//     extensions the device certificate gets. LoadProfile parses it once;
//     anything it cannot reproduce faithfully is an error, never skipped.
//   - CSR check: Profile.CheckCSR accepts only a well-formed PKCS#10 request
//     with an EC P-256 key, ecdsa-with-SHA256, a valid self-signature and
//     exactly the profile's subject attributes. Every refusal is a *CSRError
//     matching ErrCSRRejected plus one specific sentinel (ErrCSRCurve,
//     ErrDeviceType, ...).
//   - Issuance: Issuer.Issue does in-process what the FFS provisioning guide's
//     `openssl x509 -req -extfile device.conf -extensions req_ext -CA dak.pem
//     -CAkey dak.key -days 1825 -sha256` does with OpenSSL 3.0: random
//     159-bit serial, issuer = DAK subject, subject and key copied from the
//     CSR, the profile's extensions in order plus openssl's default
//     subjectKeyIdentifier and authorityKeyIdentifier. The TBSCertificate is
//     built byte by byte; the DAK is only a crypto.Signer (SoftDAK or
//     YubiKey), and every signature is verified before the certificate is
//     returned. Nothing is signed for a refused CSR.
//   - Chain: leaf, DAK, intermediates, as concatenated PEM
//     (`cat device-certificate.pem dak-certificate.pem`). ParseChainPEM
//     refuses anything that is not exactly certificates; VerifyChain checks
//     the given order and anchors it at the roots, or at the DAK when no
//     roots are given.
//   - Public key forms: CompressedPublicKey (the barcode of the FFS manufacturing guide),
//     ControlLogPublicKey (the control log of the FFS provisioning guide), Fingerprint.
//
// Private keys never pass through this package except behind crypto.Signer,
// so no error or log here can contain one.
package pki
