// Package softdak is the software Device Attestation Key: the DAK private key
// and certificate as PEM files on disk, as Amazon's FFS instructions (seed
// 002) produce them with openssl. It is meant for development and for lines
// that accept a file-based DAK; production DAKs belong on a YubiKey.
//
// # Concepts
//
//   - Key file: `dak_private_key.pem`, unencrypted (`openssl req -nodes`),
//     PKCS#8 "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY", possibly preceded by the
//     "EC PARAMETERS" block `openssl ecparam` prints. It must be readable by
//     its owner only; Open refuses anything looser and says how to fix it,
//     and refuses a key under a directory group or others may write to
//     (*DirectoryError; a root-owned sticky directory such as /tmp is fine).
//   - Certificate file: `dak-certificate.pem`, the DAK certificate, optionally
//     followed by intermediates; more intermediates may come from other files.
//   - Open checks before it returns: the key matches the certificate, the
//     certificate is valid now and the chain links verify
//     (signer.CheckChain). A SoftDAK that exists is usable.
//   - InitDevelopment (`hil dak init`): for benches without an Amazon DAK,
//     follows the FFS provisioning guide's steps (dak.conf, key, CSR) and signs the CSR with a
//     local development root CA in place of the AVS console.
//
// Neither errors nor String/GoString output ever contain key bytes.
package softdak
