// Package abi holds the names, constants and codecs of the wasmstream host ABI,
// shared by the host and the guest SDKs. ABI.md beside this file is the
// normative specification; this package is its Go rendering.
//
// The package depends on the standard library only, and not on reflection-
// based encoders, so guest SDKs compiled to Wasm can import it cheaply.
//
// # Versioning
//
// A plugin states the ABI version it was built for in its contract
// (Contract.ABI). A host supports a set of versions; Version is the newest.
// Backwards incompatible changes to the import signatures, the batch layout or
// the contract format are gated behind a new major ABI version.
package abi
