package esp

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// Inbound opens packets of one inbound SA. Open must not be called
// concurrently.
type Inbound struct {
	spi uint32
	esn bool
	t   *transform
	w   *Window

	aad     [12]byte
	ctr     [16]byte
	ks      [ctrBatch * 16]byte
	esnHi   [4]byte
	icv     [32]byte
	scratch []byte // GMAC with ESN, GCM-8: a maximal packet
	c       counters
	errs    map[error]*SAError // one per sentinel: drops must not allocate
}

// SAError is an error of Open: a sentinel error with the SA it happened
// on. Each Inbound keeps one per sentinel, so that dropping a flood of bad
// packets does not allocate.
type SAError struct {
	SPI uint32
	Err error
}

func (e *SAError) Error() string { return fmt.Sprintf("esp: SA %08x: %v", e.SPI, e.Err) }

// Unwrap returns the sentinel.
func (e *SAError) Unwrap() error { return e.Err }

// NewInbound returns the receiving side of SA cfg.
func NewInbound(cfg Config) (*Inbound, error) {
	t, err := newTransform(cfg.EncrID, cfg.EncrKey, cfg.IntegID, cfg.IntegKey)
	if err != nil {
		return nil, err
	}
	w, err := NewWindow(cfg.ReplayWindow)
	if err != nil {
		return nil, err
	}
	in := &Inbound{spi: cfg.SPI, esn: cfg.ESN, t: t, w: w, errs: map[error]*SAError{}}
	for _, e := range []error{ErrShort, ErrSPI, ErrReplay, ErrAuth, ErrPadding, ErrDummy} {
		in.errs[e] = &SAError{SPI: cfg.SPI, Err: e}
	}
	if (t.kind == kindGMAC && cfg.ESN) || t.kind == kindGCMTrunc {
		in.scratch = make([]byte, 0, 2*maxPacket+32)
	}
	return in, nil
}

// Counters returns the SA's statistics.
func (in *Inbound) Counters() Counters { return in.c.snapshot() }

// Volume returns the packets and payload bytes opened successfully so
// far, like Outbound.Volume.
func (in *Inbound) Volume() (packets, bytes uint64) {
	return in.c.packets.Load(), in.c.bytes.Load()
}

// Window returns the SA's anti-replay window; it is owned by the
// receiving goroutine.
func (in *Inbound) Window() *Window { return in.w }

// Open verifies and decrypts ESP packet pkt (SPI through ICV) in place and
// returns the payload, a subslice of pkt, with its next header and
// sequence number. The ICV is verified (in constant time) before the
// payload is decrypted or parsed and before the replay window moves; only
// the cheap replay pre-check of RFC 4303 3.4.3 comes first.
func (in *Inbound) Open(pkt []byte) (payload []byte, nh uint8, seq uint64, err error) {
	payload, nh, seq, err = in.open(pkt)
	switch {
	case err == nil:
		in.c.packets.Add(1)
		in.c.bytes.Add(uint64(len(payload)))
	case err == ErrReplay:
		in.c.replay.Add(1)
	case err == ErrAuth:
		in.c.auth.Add(1)
	default:
		in.c.other.Add(1)
	}
	if err != nil {
		if e, ok := in.errs[err]; ok {
			return nil, 0, seq, e
		}
		return nil, 0, seq, &SAError{SPI: in.spi, Err: err}
	}
	return payload, nh, seq, nil
}

func (in *Inbound) open(pkt []byte) ([]byte, uint8, uint64, error) {
	t := in.t
	n := len(pkt)
	bodyLen := n - HeaderLen - t.ivLen - t.icv
	if n > maxPacket || bodyLen < 2 || bodyLen%t.align != 0 {
		return nil, 0, 0, ErrShort
	}
	if binary.BigEndian.Uint32(pkt) != in.spi {
		return nil, 0, 0, ErrSPI
	}
	seql := binary.BigEndian.Uint32(pkt[4:])
	seq := uint64(seql)
	if in.esn {
		var ok bool
		if seq, ok = in.w.Infer(seql); !ok {
			return nil, 0, 0, ErrReplay
		}
	}
	if !in.w.Check(seq) {
		return nil, 0, 0, ErrReplay
	}
	binary.BigEndian.PutUint32(in.esnHi[:], uint32(seq>>32))
	iv := pkt[HeaderLen : HeaderLen+t.ivLen]
	body := pkt[HeaderLen+t.ivLen : n-t.icv]
	icv := pkt[n-t.icv:]

	switch t.kind {
	case kindNull, kindCBC, kindCTR:
		var hi []byte
		if in.esn {
			hi = in.esnHi[:]
		}
		want := in.icv[:t.icv]
		t.mac.sum(want, pkt[:n-t.icv], hi)
		if subtle.ConstantTimeCompare(want, icv) != 1 {
			return nil, 0, 0, ErrAuth
		}
		switch t.kind {
		case kindCBC:
			cbcDecrypt(t.block, iv, body)
		case kindCTR:
			copy(in.ctr[:4], t.nonce[:])
			copy(in.ctr[4:12], iv)
			binary.BigEndian.PutUint32(in.ctr[12:], 1)
			ctrXOR(t.block, &in.ctr, body, in.ks[:])
		}
	case kindAEAD:
		copy(in.ctr[:4], t.nonce[:])
		copy(in.ctr[4:12], iv)
		aad := aeadAAD(pkt, in.esn, in.esnHi[:], &in.aad)
		if _, err := t.aead.Open(body[:0], in.ctr[:12], pkt[HeaderLen+t.ivLen:], aad); err != nil {
			return nil, 0, 0, ErrAuth
		}
	case kindGMAC:
		copy(in.ctr[:4], t.nonce[:])
		copy(in.ctr[4:12], iv)
		aad := gmacAAD(pkt[:n-t.icv], in.esn, in.esnHi[:], &in.aad, in.scratch)
		if _, err := t.aead.Open(in.icv[:0], in.ctr[:12], icv, aad); err != nil {
			return nil, 0, 0, ErrAuth
		}
	case kindGCMTrunc:
		// Recompute the full tag: decrypt into scratch with the GCM
		// keystream (counter 2 onwards), re-seal, compare the prefix.
		copy(in.ctr[:4], t.nonce[:])
		copy(in.ctr[4:12], iv)
		plain := append(in.scratch[:0], body...)
		binary.BigEndian.PutUint32(in.ctr[12:], 2)
		ctrXOR(t.block, &in.ctr, plain, in.ks[:])
		aad := aeadAAD(pkt, in.esn, in.esnHi[:], &in.aad)
		sealed := t.aead.Seal(plain[len(plain):], in.ctr[:12], plain, aad)
		if subtle.ConstantTimeCompare(sealed[len(plain):len(plain)+t.icv], icv) != 1 {
			return nil, 0, 0, ErrAuth
		}
		copy(body, plain)
	}
	in.w.Accept(seq)

	padLen := int(body[len(body)-2])
	nh := body[len(body)-1]
	if padLen+2 > len(body) {
		return nil, 0, seq, ErrPadding
	}
	p := len(body) - 2 - padLen
	for i := 0; i < padLen; i++ {
		if body[p+i] != byte(i+1) {
			return nil, 0, seq, ErrPadding
		}
	}
	if nh == ProtoDummy {
		return nil, 0, seq, ErrDummy
	}
	return body[:p], nh, seq, nil
}
