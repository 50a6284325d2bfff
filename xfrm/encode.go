package xfrm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// ne is the byte order of the kernel's host-order fields.
var ne = binary.NativeEndian

// be is the byte order of the __be16/__be32 fields (SPI, ports).
var be = binary.BigEndian

// Errors of the encoders, for callers that build SAs and policies.
var (
	// ErrFamily is returned for a missing address, or addresses of
	// different families where the kernel needs one.
	ErrFamily = errors.New("xfrm: invalid or mixed address families")
	// ErrAlgorithm is returned for an SA without valid algorithms.
	ErrAlgorithm = errors.New("xfrm: invalid algorithms")
)

// maxKeyLen bounds algorithm keys (the kernel's own limit is larger; no
// IPsec algorithm comes near it).
const maxKeyLen = 512

func family(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// putAddr writes a as an xfrm_address_t (16 bytes, IPv4 in the first 4).
func putAddr(b []byte, a netip.Addr) {
	if !a.IsValid() {
		return
	}
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// prefixFamily returns the family of a selector prefix pair; zero
// prefixes take the other's family, or def when both are zero.
func selectorFamily(s Selector, def uint16) (uint16, error) {
	var fam uint16
	for _, p := range []netip.Prefix{s.Src, s.Dst} {
		if !p.IsValid() {
			continue
		}
		f := family(p.Addr())
		if fam != 0 && f != fam {
			return 0, ErrFamily
		}
		fam = f
	}
	if fam == 0 {
		fam = def
	}
	return fam, nil
}

// putSelector writes s as a struct xfrm_selector of family fam.
func putSelector(b []byte, s Selector, fam uint16) {
	if s.Dst.IsValid() {
		putAddr(b[selDaddr:], s.Dst.Masked().Addr().Unmap())
		b[selPrefixD] = uint8(s.Dst.Bits())
	}
	if s.Src.IsValid() {
		putAddr(b[selSaddr:], s.Src.Masked().Addr().Unmap())
		b[selPrefixS] = uint8(s.Src.Bits())
	}
	be.PutUint16(b[selDport:], s.DstPort.Port&s.DstPort.Mask)
	be.PutUint16(b[selDportMask:], s.DstPort.Mask)
	be.PutUint16(b[selSport:], s.SrcPort.Port&s.SrcPort.Mask)
	be.PutUint16(b[selSportMask:], s.SrcPort.Mask)
	ne.PutUint16(b[selFamily:], fam)
	b[selProto] = s.Proto
}

// putLifetime writes a struct xfrm_lifetime_cfg with l's volume limits
// and no time limits (the IKE stack keeps time).
func putLifetime(b []byte, l Lifetime) {
	for i, v := range []uint64{l.SoftBytes, l.HardBytes, l.SoftPackets, l.HardPackets, 0, 0, 0, 0} {
		if i < 4 && v == 0 {
			v = infinite
		}
		ne.PutUint64(b[8*i:], v)
	}
}

// appendAttr appends a netlink attribute, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, data ...[]byte) []byte {
	n := unix.SizeofNlAttr
	for _, d := range data {
		n += len(d)
	}
	b = ne.AppendUint16(b, uint16(n))
	b = ne.AppendUint16(b, typ)
	for _, d := range data {
		b = append(b, d...)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// algoHeader returns the fixed part of struct xfrm_algo (extra empty) or
// xfrm_algo_auth/xfrm_algo_aead (extra: trunc/ICV bits).
func algoHeader(a *Algorithm, withBits bool) ([]byte, error) {
	if a.Name == "" || len(a.Name) >= algNameLen || len(a.Key) > maxKeyLen {
		return nil, fmt.Errorf("%w: algorithm %q with %d-byte key", ErrAlgorithm, a.Name, len(a.Key))
	}
	n := sizeAlgo
	if withBits {
		n = sizeAlgoAuth
		if a.Bits <= 0 || a.Bits > 8*64 {
			return nil, fmt.Errorf("%w: %s with %d bits", ErrAlgorithm, a.Name, a.Bits)
		}
	}
	h := make([]byte, n)
	copy(h, a.Name)
	ne.PutUint32(h[algNameLen:], uint32(8*len(a.Key)))
	if withBits {
		ne.PutUint32(h[algNameLen+4:], uint32(a.Bits))
	}
	return h, nil
}

// encodeNewSA returns the body of an XFRM_MSG_NEWSA request for sa.
func encodeNewSA(sa *SA) ([]byte, error) {
	if !sa.Src.IsValid() || !sa.Dst.IsValid() || sa.Src.Unmap().Is4() != sa.Dst.Unmap().Is4() {
		return nil, fmt.Errorf("%w: SA %v to %v", ErrFamily, sa.Src, sa.Dst)
	}
	src, dst := sa.Src.Unmap(), sa.Dst.Unmap()
	fam := family(dst)
	selFam, err := selectorFamily(sa.Selector, fam)
	if err != nil {
		return nil, err
	}
	if sa.ReplayWindow%32 != 0 || sa.ReplayWindow > 4096 {
		return nil, fmt.Errorf("xfrm: replay window %d: want a multiple of 32 up to 4096", sa.ReplayWindow)
	}
	b := make([]byte, sizeUserSAInfo, 512)
	putSelector(b[saSel:], sa.Selector, selFam)
	putAddr(b[saID:], dst)
	be.PutUint32(b[saID+16:], sa.SPI)
	b[saID+20] = protoESP
	putAddr(b[saSaddr:], src)
	putLifetime(b[saLft:], sa.Limits)
	ne.PutUint32(b[saReqID:], sa.ReqID)
	ne.PutUint16(b[saFamily:], fam)
	b[saMode] = uint8(sa.Mode)
	if selFam != fam {
		// A 4-in-6 or 6-in-4 tunnel: the selector has its own family.
		b[saFlags] |= stateAFUnspec
	}
	// The replay state always goes in XFRMA_REPLAY_ESN_VAL (the kernel
	// then wants replay_window 0 here): it is the only form for windows
	// beyond 32 packets and for ESN.
	if sa.ESN {
		b[saFlags] |= stateESN
	}
	switch {
	case sa.AEAD != nil && sa.Crypt == nil && sa.Auth == nil:
		h, err := algoHeader(sa.AEAD, true)
		if err != nil {
			return nil, err
		}
		b = appendAttr(b, attrAlgAEAD, h, sa.AEAD.Key)
	case sa.AEAD == nil && sa.Crypt != nil && sa.Auth != nil:
		h, err := algoHeader(sa.Crypt, false)
		if err != nil {
			return nil, err
		}
		b = appendAttr(b, attrAlgCrypt, h, sa.Crypt.Key)
		if h, err = algoHeader(sa.Auth, true); err != nil {
			return nil, err
		}
		b = appendAttr(b, attrAlgAuthTrunc, h, sa.Auth.Key)
	default:
		return nil, fmt.Errorf("%w: want an AEAD, or encryption and integrity", ErrAlgorithm)
	}
	if sa.Encap != nil {
		e := make([]byte, sizeEncapTmpl)
		ne.PutUint16(e, udpEncapESPInUDP)
		be.PutUint16(e[2:], sa.Encap.SrcPort)
		be.PutUint16(e[4:], sa.Encap.DstPort)
		b = appendAttr(b, attrEncap, e)
	}
	r := make([]byte, sizeReplayESN+4*(sa.ReplayWindow/32))
	ne.PutUint32(r, sa.ReplayWindow/32) // bmp_len
	ne.PutUint32(r[20:], sa.ReplayWindow)
	b = appendAttr(b, attrReplayESNVal, r)
	return b, nil
}

// encodeSAID returns a struct xfrm_usersa_id, the body of
// XFRM_MSG_DELSA and XFRM_MSG_GETSA requests.
func encodeSAID(id SAID) ([]byte, error) {
	if !id.Dst.IsValid() {
		return nil, fmt.Errorf("%w: SA without destination", ErrFamily)
	}
	dst := id.Dst.Unmap()
	b := make([]byte, sizeUserSAID)
	putAddr(b, dst)
	be.PutUint32(b[16:], id.SPI)
	ne.PutUint16(b[20:], family(dst))
	b[22] = protoESP
	return b, nil
}

// encodeNewPolicy returns the body of an XFRM_MSG_NEWPOLICY request.
func encodeNewPolicy(p *Policy) ([]byte, error) {
	fam, err := selectorFamily(p.Selector, 0)
	if err != nil || fam == 0 {
		return nil, fmt.Errorf("%w: policy selector %v to %v", ErrFamily, p.Selector.Src, p.Selector.Dst)
	}
	if p.Dir > Fwd {
		return nil, fmt.Errorf("xfrm: policy direction %v", p.Dir)
	}
	b := make([]byte, sizeUserPolicyInfo, sizeUserPolicyInfo+unix.SizeofNlAttr+sizeUserTmpl)
	putSelector(b[polSel:], p.Selector, fam)
	putLifetime(b[polLft:], Lifetime{})
	ne.PutUint32(b[polPriority:], p.Priority)
	b[polDir] = uint8(p.Dir)
	b[polAction] = actionAllow
	t := make([]byte, sizeUserTmpl)
	tfam := fam
	if p.Tmpl.Mode == Tunnel {
		if !p.Tmpl.Src.IsValid() || !p.Tmpl.Dst.IsValid() || p.Tmpl.Src.Unmap().Is4() != p.Tmpl.Dst.Unmap().Is4() {
			return nil, fmt.Errorf("%w: tunnel template %v to %v", ErrFamily, p.Tmpl.Src, p.Tmpl.Dst)
		}
		tfam = family(p.Tmpl.Dst.Unmap())
	}
	putAddr(t[tmplID:], p.Tmpl.Dst.Unmap())
	t[tmplID+20] = protoESP
	ne.PutUint16(t[tmplFamily:], tfam)
	putAddr(t[tmplSaddr:], p.Tmpl.Src.Unmap())
	ne.PutUint32(t[tmplReqID:], p.Tmpl.ReqID)
	t[tmplMode] = uint8(p.Tmpl.Mode)
	// Any algorithm: the SA found by the request ID decides.
	ne.PutUint32(t[tmplAalgos:], ^uint32(0))
	ne.PutUint32(t[tmplEalgos:], ^uint32(0))
	ne.PutUint32(t[tmplCalgos:], ^uint32(0))
	return appendAttr(b, attrTmpl, t), nil
}

// encodePolicyID returns a struct xfrm_userpolicy_id, the body of an
// XFRM_MSG_DELPOLICY request for the policy with p's selector and
// direction.
func encodePolicyID(p *Policy) ([]byte, error) {
	fam, err := selectorFamily(p.Selector, 0)
	if err != nil || fam == 0 {
		return nil, fmt.Errorf("%w: policy selector %v to %v", ErrFamily, p.Selector.Src, p.Selector.Dst)
	}
	b := make([]byte, sizeUserPolicyID)
	putSelector(b, p.Selector, fam)
	b[sizeSelector+4] = uint8(p.Dir)
	return b, nil
}

// encodeSocketBypass returns a struct xfrm_userpolicy_info for the
// IP_XFRM_POLICY/IPV6_XFRM_POLICY socket option: allow everything in
// direction dir without IPsec, whatever the global policies say.
func encodeSocketBypass(fam uint16, dir Dir) []byte {
	b := make([]byte, sizeUserPolicyInfo)
	ne.PutUint16(b[polSel+selFamily:], fam)
	putLifetime(b[polLft:], Lifetime{})
	b[polDir] = uint8(dir)
	b[polAction] = actionAllow
	return b
}

// request frames body as a netlink request of type typ.
func request(typ uint16, flags uint16, seq uint32, body []byte) []byte {
	b := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	ne.PutUint32(b, uint32(unix.SizeofNlMsghdr+len(body)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags|unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], seq)
	return append(b, body...)
}
