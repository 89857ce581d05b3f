// Package signer defines the Device Attestation Key (DAK) as the harness sees
// it: something that signs device certificates and knows its own certificate
// chain.
//
// # Concepts
//
//   - DAK: the key that signs every Device Hardware Authentication (DHA)
//     certificate (the FFS provisioning guide). Amazon's console signs the DAK certificate; in
//     development a local root does (see softdak.InitDevelopment).
//   - Signer: a crypto.Signer plus Chain and Description. Backends live in
//     subpackages (softdak today; a YubiKey backend and a signing agent later)
//     so callers never learn where the private key is.
//   - Chain: the DAK certificate first, then intermediates up to but not
//     including the root. Device chains are the device certificate followed by
//     this chain (the FFS provisioning guide: `cat device-certificate.pem dak-certificate.pem`).
//   - CheckChain: the checks every backend runs when it opens, so that a DAK
//     whose key, validity or chain is wrong is refused before anything is
//     signed with it.
//
// Descriptions and errors never contain key material.
package signer
