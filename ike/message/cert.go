package message

import (
	"fmt"
)

// Cert is a Certificate payload (RFC 7296 section 3.6).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

// Type implements Payload.
func (*Cert) Type() PayloadType { return PayloadCERT }

func (c *Cert) appendBody(b []byte) []byte { return append(append(b, byte(c.Encoding)), c.Data...) }

func (c *Cert) decodeBody(b []byte) error {
	if len(b) < 1 {
		return fmt.Errorf("CERT body: %w", ErrTruncated)
	}
	c.Encoding, c.Data = CertEncoding(b[0]), opt(b[1:])
	return nil
}

// CertReq is a Certificate Request payload (RFC 7296 section 3.7). For X.509
// the authority is a concatenation of 20-byte SHA-1 key hashes.
type CertReq struct {
	Encoding  CertEncoding
	Authority []byte
}

// Type implements Payload.
func (*CertReq) Type() PayloadType { return PayloadCERTREQ }

func (c *CertReq) appendBody(b []byte) []byte {
	return append(append(b, byte(c.Encoding)), c.Authority...)
}

func (c *CertReq) decodeBody(b []byte) error {
	if len(b) < 1 {
		return fmt.Errorf("CERTREQ body: %w", ErrTruncated)
	}
	c.Encoding, c.Authority = CertEncoding(b[0]), opt(b[1:])
	return nil
}
