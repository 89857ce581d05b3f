// Package devices reads the devices a factory output is made for from the ledger: every label,
// control log and report is written from the ledger's records, never from what a run remembers.
//
// # Concepts
//
//   - A device is a live ledger record that was read back from the device (verified): its
//     chain is on the device and is the one issued. Records only reserved, issued or stored are
//     not yet facts about the device and are left out, unless the caller takes issued ones too
//     (Unverified): `hil sign`, the CSR Signing Application's drop-in, never sees the device, so
//     its records stay issued.
//   - The device's public key comes from the record's chain (the leaf), never from elsewhere.
package devices

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"

	"hilbench/harness/ledger"
	"hilbench/harness/pki"
)

// Lister is the part of ledger.Store this package reads.
type Lister interface {
	List(ctx context.Context, f ledger.Filter) ([]ledger.Record, error)
}

// Device is one verified identity.
type Device struct {
	Record ledger.Record
	Chain  []*x509.Certificate // leaf first
}

// ID is the device's serial/DSN as the ledger holds it ("" when the device reported none).
func (d *Device) ID() string { return d.Record.DeviceID }

// Key is the ledger's device key (SHA-256 of the public key).
func (d *Device) Key() string { return d.Record.DeviceKey }

// Leaf is the device certificate.
func (d *Device) Leaf() *x509.Certificate { return d.Chain[0] }

// Name is how messages name the device: its id, or its record and key when it has no id.
func (d *Device) Name() string {
	if d.Record.DeviceID != "" {
		return fmt.Sprintf("device %q", d.Record.DeviceID)
	}
	return fmt.Sprintf("ledger record %d (device key %.16s…)", d.Record.ID, d.Record.DeviceKey)
}

// ErrNoDevice: no verified record matches the device asked for.
var ErrNoDevice = errors.New("no verified ledger record")

// Which says which records count as devices.
type Which int

const (
	// Verified: records read back from the device.
	Verified Which = iota
	// Unverified: also records issued or stored but not read back (hil sign's).
	Unverified
)

func (w Which) states() []ledger.State {
	if w == Unverified {
		return []ledger.State{ledger.Issued, ledger.Stored, ledger.Verified}
	}
	return []ledger.State{ledger.Verified}
}

func list(ctx context.Context, l Lister, f ledger.Filter, w Which) ([]ledger.Record, error) {
	var recs []ledger.Record
	for _, st := range w.states() {
		f.State = st
		r, err := l.List(ctx, f)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r...)
	}
	return recs, nil
}

// All returns every device, ordered by device id then record id.
func All(ctx context.Context, l Lister, w Which) ([]Device, error) {
	recs, err := list(ctx, l, ledger.Filter{}, w)
	if err != nil {
		return nil, err
	}
	out := make([]Device, 0, len(recs))
	for _, r := range recs {
		d, err := fromRecord(r)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Record.DeviceID != out[j].Record.DeviceID {
			return out[i].Record.DeviceID < out[j].Record.DeviceID
		}
		return out[i].Record.ID < out[j].Record.ID
	})
	return out, nil
}

// One returns the device whose serial/DSN or device key is id.
func One(ctx context.Context, l Lister, id string, w Which) (Device, error) {
	for _, f := range []ledger.Filter{{DeviceID: id}, {DeviceKey: id}} {
		recs, err := list(ctx, l, f, w)
		if err != nil {
			return Device{}, err
		}
		if len(recs) > 0 {
			return fromRecord(recs[len(recs)-1])
		}
	}
	what := "verified"
	if w == Unverified {
		what = "issued, stored or verified"
	}
	return Device{}, fmt.Errorf("%w for device %q: none %s (serial/DSN or device key; see hil ledger list)", ErrNoDevice, id, what)
}

func fromRecord(r ledger.Record) (Device, error) {
	chain, err := pki.ParseChainPEM([]byte(r.ChainPEM))
	if err == nil && len(chain) == 0 {
		err = errors.New("empty chain")
	}
	if err != nil {
		return Device{}, fmt.Errorf("ledger record %d: chain: %w", r.ID, err)
	}
	// The record is filed under its leaf's key; a chain of another key is a damaged record.
	if k, err := ledger.KeyHash(chain[0].PublicKey); err != nil || k != r.DeviceKey {
		return Device{}, fmt.Errorf("ledger record %d: the chain's leaf key is not the record's device key", r.ID)
	}
	return Device{Record: r, Chain: chain}, nil
}
