package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// NextHeader values of the ESP trailer.
const (
	ProtoIPv4  = 4  // tunnel mode, inner IPv4
	ProtoIPv6  = 41 // tunnel mode, inner IPv6
	ProtoDummy = 59 // IPv6-NoNxt: a dummy packet (RFC 4303 2.6)
)

// HeaderLen is the SPI and sequence number in front of every ESP packet.
const HeaderLen = 8

// maxPacket bounds the ESP packets this package builds and accepts: the
// largest IP payload.
const maxPacket = 65535

// Config describes one direction of an SA with its keys.
type Config struct {
	SPI      uint32
	EncrID   uint16 // ENCR_* transform ID (IANA IKEv2 registry)
	EncrKey  []byte // key, then the salt/nonce for AES-CTR, AES-GCM, GMAC, ChaCha20
	IntegID  uint16 // AUTH_* transform ID; AUTH_NONE with combined modes
	IntegKey []byte
	ESN      bool // 64-bit sequence numbers (RFC 4303 2.2.1)
	// ReplayWindow is the inbound anti-replay window in packets; 0 means
	// DefaultReplayWindow. Ignored for Outbound.
	ReplayWindow int
}

// Counters are the statistics of one direction of an SA.
type Counters struct {
	Packets, Bytes uint64 // processed successfully; bytes of ESP payload data
	ReplayDrops    uint64 // inbound: replayed or too old
	AuthFailures   uint64 // inbound: ICV did not verify
	OtherDrops     uint64 // inbound: malformed, bad padding, dummy
}

type counters struct {
	packets, bytes, replay, auth, other atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{Packets: c.packets.Load(), Bytes: c.bytes.Load(), ReplayDrops: c.replay.Load(), AuthFailures: c.auth.Load(), OtherDrops: c.other.Load()}
}

// Outbound seals packets of one outbound SA. Seal must not be called
// concurrently.
type Outbound struct {
	spi uint32
	esn bool
	t   *transform
	seq uint64 // last sequence number sent
	max uint64

	ivGen cipher.Block // CBC: IV = E_ivkey(seq), unpredictable (RFC 3602 2.3)
	aad   [12]byte
	ctr   [16]byte
	ks    [ctrBatch * 16]byte
	esnHi [4]byte
	gmac  []byte // GMAC with ESN: the AAD is assembled here
	c     counters
}

// NewOutbound returns the sending side of SA cfg.
func NewOutbound(cfg Config) (*Outbound, error) {
	t, err := newTransform(cfg.EncrID, cfg.EncrKey, cfg.IntegID, cfg.IntegKey)
	if err != nil {
		return nil, err
	}
	o := &Outbound{spi: cfg.SPI, esn: cfg.ESN, t: t, max: 1<<32 - 1}
	if cfg.ESN {
		o.max = ^uint64(0)
	}
	if t.kind == kindCBC {
		var k [16]byte
		if _, err := rand.Read(k[:]); err != nil {
			return nil, fmt.Errorf("esp: IV key: %w", err)
		}
		o.ivGen, _ = aes.NewCipher(k[:])
	}
	if t.kind == kindGMAC && cfg.ESN {
		o.gmac = make([]byte, 0, maxPacket+4)
	}
	return o, nil
}

// Overhead returns how many bytes sealing adds to a payload of n bytes.
func (o *Outbound) Overhead(n int) int {
	return HeaderLen + o.t.ivLen + o.t.padLen(n) + 2 + o.t.icv
}

// MaxOverhead returns the largest Overhead for any payload length.
func (o *Outbound) MaxOverhead() int {
	return HeaderLen + o.t.ivLen + o.t.align - 1 + 2 + o.t.icv
}

// Counters returns the SA's statistics.
func (o *Outbound) Counters() Counters { return o.c.snapshot() }

// Volume returns the packets and payload bytes sealed so far: two
// atomic loads, for a data plane checking volume limits per packet.
func (o *Outbound) Volume() (packets, bytes uint64) {
	return o.c.packets.Load(), o.c.bytes.Load()
}

// ESN reports whether the SA uses 64-bit sequence numbers.
func (o *Outbound) ESN() bool { return o.esn }

// Seq returns the last sequence number sent.
func (o *Outbound) Seq() uint64 { return o.seq }

// SetSeq sets the last sequence number sent, for tests of the limits.
func (o *Outbound) SetSeq(seq uint64) { o.seq = seq }

// Seal appends to dst the ESP packet (SPI through ICV) carrying payload
// with next header nh. It allocates only when dst lacks capacity: Overhead
// plus len(payload), plus 8 for AES-GCM with 8-byte ICVs. payload may be
// dst[len(dst)+HeaderLen+IV length:], already in place.
func (o *Outbound) Seal(dst, payload []byte, nh uint8) ([]byte, error) {
	if o.seq >= o.max {
		return dst, fmt.Errorf("esp: SA %08x: %w", o.spi, ErrSeqExhausted)
	}
	t := o.t
	pad := t.padLen(len(payload))
	n := HeaderLen + t.ivLen + len(payload) + pad + 2 + t.icv
	if n > maxPacket {
		return dst, fmt.Errorf("esp: SA %08x: %d-byte packet: %w", o.spi, n, ErrTooBig)
	}
	extra := 0
	if t.kind == kindGCMTrunc {
		extra = 16 - t.icv
	}
	start := len(dst)
	if cap(dst)-start < n+extra {
		grown := make([]byte, start, start+n+extra)
		copy(grown, dst)
		dst = grown
	}
	pkt := dst[start : start+n]
	o.seq++
	seq := o.seq
	binary.BigEndian.PutUint32(pkt[0:], o.spi)
	binary.BigEndian.PutUint32(pkt[4:], uint32(seq))
	iv := pkt[HeaderLen : HeaderLen+t.ivLen]
	body := pkt[HeaderLen+t.ivLen : n-t.icv] // payload, padding, trailer
	copy(body, payload)
	p := len(payload)
	for i := 0; i < pad; i++ {
		body[p+i] = byte(i + 1)
	}
	body[p+pad] = byte(pad)
	body[p+pad+1] = nh
	icv := pkt[n-t.icv:]
	binary.BigEndian.PutUint32(o.esnHi[:], uint32(seq>>32))

	switch t.kind {
	case kindNull:
	case kindCBC:
		clear(o.ctr[:8])
		binary.BigEndian.PutUint64(o.ctr[8:], seq)
		o.ivGen.Encrypt(iv, o.ctr[:])
		cbcEncrypt(t.block, iv, body)
	case kindCTR:
		binary.BigEndian.PutUint64(iv, seq)
		copy(o.ctr[:4], t.nonce[:])
		copy(o.ctr[4:12], iv)
		binary.BigEndian.PutUint32(o.ctr[12:], 1)
		ctrXOR(t.block, &o.ctr, body, o.ks[:])
	default:
		// The IV only has to be unique per key (RFC 4106 3.1): the
		// sequence number is.
		binary.BigEndian.PutUint64(iv, seq)
		copy(o.ctr[:4], t.nonce[:])
		copy(o.ctr[4:12], iv)
		nonce := o.ctr[:12]
		switch t.kind {
		case kindGMAC:
			t.aead.Seal(icv[:0], nonce, nil, gmacAAD(pkt[:n-t.icv], o.esn, o.esnHi[:], &o.aad, o.gmac))
		default:
			aad := aeadAAD(pkt, o.esn, o.esnHi[:], &o.aad)
			// Seal writes the tag right after body: into icv, and for
			// GCM-8 8 bytes past it, into capacity checked above.
			t.aead.Seal(body[:0], nonce, body, aad)
		}
	}
	if t.mac != nil {
		var hi []byte
		if o.esn {
			hi = o.esnHi[:]
		}
		t.mac.sum(icv, pkt[:n-t.icv], hi)
	}
	o.c.packets.Add(1)
	o.c.bytes.Add(uint64(len(payload)))
	return dst[:start+n], nil
}

// aeadAAD returns the AAD of RFC 4106 5 / RFC 7634 2.1: SPI and the 32-bit
// sequence number, or SPI, high and low halves of the ESN.
func aeadAAD(pkt []byte, esn bool, hi []byte, buf *[12]byte) []byte {
	if !esn {
		return pkt[:8]
	}
	copy(buf[0:4], pkt[0:4])
	copy(buf[4:8], hi)
	copy(buf[8:12], pkt[4:8])
	return buf[:]
}

// gmacAAD returns what AES-GMAC authenticates (RFC 4543 3.3): the ESP
// header (with the ESN high half), IV, payload, padding and trailer. Only
// with ESN is it not contiguous in the packet; then it is assembled in
// scratch, which holds a maximal packet.
func gmacAAD(msg []byte, esn bool, hi []byte, buf *[12]byte, scratch []byte) []byte {
	if !esn {
		return msg
	}
	s := scratch[:0]
	s = append(s, aeadAAD(msg, true, hi, buf)...)
	return append(s, msg[8:]...)
}
