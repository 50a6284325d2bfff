package message

import (
	"encoding/binary"
	"fmt"
)

// KE is the Key Exchange payload (RFC 7296 section 3.4).
type KE struct {
	Group uint16 // key exchange method (Transform Type 4 ID)
	Data  []byte // the public value
}

// Type implements Payload.
func (*KE) Type() PayloadType { return PayloadKE }

func (k *KE) appendBody(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, k.Group)
	return append(append(b, 0, 0), k.Data...)
}

func (k *KE) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("KE body: %w", ErrTruncated)
	}
	k.Group = binary.BigEndian.Uint16(b)
	k.Data = opt(b[4:])
	return nil
}

// ID is an Identification payload, IDi or IDr (RFC 7296 section 3.5).
type ID struct {
	Initiator bool // IDi when true, IDr otherwise
	IDType    IDType
	Data      []byte
}

// Type implements Payload.
func (id *ID) Type() PayloadType {
	if id.Initiator {
		return PayloadIDi
	}
	return PayloadIDr
}

func (id *ID) appendBody(b []byte) []byte {
	return append(append(b, byte(id.IDType), 0, 0, 0), id.Data...)
}

func (id *ID) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("ID body: %w", ErrTruncated)
	}
	id.IDType = IDType(b[0])
	id.Data = opt(b[4:])
	return nil
}

// Body returns the payload body (ID Type, RESERVED, data): the
// RestOfInitIDPayload / RestOfRespIDPayload of RFC 7296 section 2.15.
func (id *ID) Body() []byte { return id.appendBody(nil) }

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

// Auth is the Authentication payload (RFC 7296 section 3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

// Type implements Payload.
func (*Auth) Type() PayloadType { return PayloadAUTH }

func (a *Auth) appendBody(b []byte) []byte {
	return append(append(b, byte(a.Method), 0, 0, 0), a.Data...)
}

func (a *Auth) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("AUTH body: %w", ErrTruncated)
	}
	a.Method, a.Data = AuthMethod(b[0]), opt(b[4:])
	return nil
}

// Nonce lengths allowed by RFC 7296 section 3.9.
const (
	MinNonceLen = 16
	MaxNonceLen = 256
)

// Nonce is the Nonce payload (RFC 7296 section 3.9).
type Nonce struct {
	Data []byte
}

// Type implements Payload.
func (*Nonce) Type() PayloadType { return PayloadNonce }

func (n *Nonce) appendBody(b []byte) []byte { return append(b, n.Data...) }

func (n *Nonce) decodeBody(b []byte) error {
	if len(b) < MinNonceLen || len(b) > MaxNonceLen {
		return fmt.Errorf("nonce of %d bytes: %w", len(b), ErrLength)
	}
	n.Data = b
	return nil
}

// Notify is the Notify payload (RFC 7296 section 3.10).
type Notify struct {
	Protocol ProtocolID
	SPI      []byte
	Kind     NotifyType
	Data     []byte
}

// Type implements Payload.
func (*Notify) Type() PayloadType { return PayloadNotify }

func (n *Notify) appendBody(b []byte) []byte {
	b = append(b, byte(n.Protocol), byte(len(n.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(n.Kind))
	return append(append(b, n.SPI...), n.Data...)
}

func (n *Notify) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("notify body: %w", ErrTruncated)
	}
	n.Protocol = ProtocolID(b[0])
	spi := int(b[1])
	n.Kind = NotifyType(binary.BigEndian.Uint16(b[2:4]))
	if 4+spi > len(b) {
		return fmt.Errorf("notify SPI size %d: %w", spi, ErrTruncated)
	}
	if spi > 0 {
		n.SPI = b[4 : 4+spi : 4+spi]
	}
	n.Data = opt(b[4+spi:])
	return nil
}

// Delete is the Delete payload (RFC 7296 section 3.11).
type Delete struct {
	Protocol ProtocolID
	SPISize  uint8
	SPIs     [][]byte
}

// Type implements Payload.
func (*Delete) Type() PayloadType { return PayloadDelete }

func (d *Delete) appendBody(b []byte) []byte {
	b = append(b, byte(d.Protocol), d.SPISize)
	b = binary.BigEndian.AppendUint16(b, uint16(len(d.SPIs)))
	for _, s := range d.SPIs {
		b = append(b, s...)
	}
	return b
}

func (d *Delete) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("delete body: %w", ErrTruncated)
	}
	d.Protocol = ProtocolID(b[0])
	d.SPISize = b[1]
	count := int(binary.BigEndian.Uint16(b[2:4]))
	b = b[4:]
	size := int(d.SPISize)
	switch {
	case d.Protocol == ProtoIKE && (size != 0 || count != 0):
		// Deleting the IKE SA names no SPI: the header's SPIs identify it.
		if size != 0 && size != 8 {
			return fmt.Errorf("delete IKE SPI size %d: %w", size, ErrSyntax)
		}
	case (d.Protocol == ProtoESP || d.Protocol == ProtoAH) && size != 4:
		return fmt.Errorf("delete %d SPI size %d: %w", d.Protocol, size, ErrSyntax)
	}
	if count*size != len(b) {
		return fmt.Errorf("delete %d SPIs of %d bytes in %d bytes: %w", count, size, len(b), ErrLength)
	}
	if count > 0 && size > 0 {
		d.SPIs = make([][]byte, count)
		for i := range d.SPIs {
			d.SPIs[i] = b[i*size : (i+1)*size : (i+1)*size]
		}
	}
	return nil
}

// VendorID is the Vendor ID payload (RFC 7296 section 3.12).
type VendorID struct {
	Data []byte
}

// Type implements Payload.
func (*VendorID) Type() PayloadType { return PayloadVendor }

func (v *VendorID) appendBody(b []byte) []byte { return append(b, v.Data...) }
func (v *VendorID) decodeBody(b []byte) error  { v.Data = opt(b); return nil }

// EAP is the EAP payload (RFC 7296 section 3.16), kept opaque: the EAP
// message's own length must match the payload.
type EAP struct {
	Data []byte
}

// Type implements Payload.
func (*EAP) Type() PayloadType { return PayloadEAP }

func (e *EAP) appendBody(b []byte) []byte { return append(b, e.Data...) }

func (e *EAP) decodeBody(b []byte) error {
	if len(b) < 4 {
		return fmt.Errorf("EAP message: %w", ErrTruncated)
	}
	if n := int(binary.BigEndian.Uint16(b[2:4])); n != len(b) {
		return fmt.Errorf("EAP length %d in %d bytes: %w", n, len(b), ErrLength)
	}
	e.Data = b
	return nil
}
