package pki

import (
	"encoding/asn1"
	"math/big"
	"time"
)

// Small DER builders on top of encoding/asn1. The certificate is assembled
// from pieces so that every byte is under our control (x509.CreateCertificate
// would order and add extensions its own way, not openssl's).

// derWrap encodes parts, concatenated, under one tag.
func derWrap(class, tag int, compound bool, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	content := make([]byte, 0, n)
	for _, p := range parts {
		content = append(content, p...)
	}
	b, err := asn1.Marshal(asn1.RawValue{Class: class, Tag: tag, IsCompound: compound, Bytes: content})
	if err != nil {
		// RawValue with explicit class/tag cannot fail to marshal.
		panic("pki: marshalling raw value: " + err.Error())
	}
	return b
}

func derSequence(parts ...[]byte) []byte {
	return derWrap(asn1.ClassUniversal, asn1.TagSequence, true, parts...)
}

func derOctetString(b []byte) []byte {
	return derWrap(asn1.ClassUniversal, asn1.TagOctetString, false, b)
}

func derContextExplicit(tag int, parts ...[]byte) []byte {
	return derWrap(asn1.ClassContextSpecific, tag, true, parts...)
}

func derContextPrimitive(tag int, content []byte) []byte {
	return derWrap(asn1.ClassContextSpecific, tag, false, content)
}

func mustMarshal(v any) []byte {
	b, err := asn1.Marshal(v)
	if err != nil {
		panic("pki: marshalling " + err.Error())
	}
	return b
}

func derOID(oid asn1.ObjectIdentifier) []byte { return mustMarshal(oid) }

func derBigInt(n *big.Int) []byte { return mustMarshal(n) }

// derBoolTrue is DER TRUE; DER BOOLEAN TRUE is always 0xFF (X.690 11.1).
var derBoolTrue = []byte{0x01, 0x01, 0xff}

// derBitString encodes a BIT STRING whose last byte has unused low bits.
func derBitString(b []byte, unused int) []byte {
	return derWrap(asn1.ClassUniversal, asn1.TagBitString, false, []byte{byte(unused)}, b)
}

// derTime encodes a certificate validity time as RFC 5280 4.1.2.5 requires
// (and OpenSSL's ASN1_TIME_adj does): UTCTime for 1950-2049, else
// GeneralizedTime, seconds precision, "Z".
func derTime(t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		return derWrap(asn1.ClassUniversal, asn1.TagUTCTime, false, []byte(t.Format("060102150405Z")))
	}
	return derWrap(asn1.ClassUniversal, asn1.TagGeneralizedTime, false, []byte(t.Format("20060102150405Z")))
}

// derContent returns the content octets of a single DER TLV.
func derContent(tlv []byte) ([]byte, error) {
	var rv asn1.RawValue
	rest, err := asn1.Unmarshal(tlv, &rv)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, asn1.SyntaxError{Msg: "trailing data"}
	}
	return rv.Bytes, nil
}
