package xfrm

// Kernel ABI of include/uapi/linux/xfrm.h: message types, attribute
// types, flags and the sizes and field offsets of its structs, which are
// the same on every 64-bit and 32-bit architecture Linux supports (the
// structs are padded to 8 bytes only where a __u64 forces it).

// Message types (XFRM_MSG_*).
const (
	msgNewSA     = 0x10
	msgDelSA     = 0x11
	msgGetSA     = 0x12
	msgNewPolicy = 0x13
	msgDelPolicy = 0x14
	msgGetPolicy = 0x15
	msgExpire    = 0x18
	msgUpdPolicy = 0x19
)

// Attribute types (XFRMA_*).
const (
	attrAlgAuth      = 1
	attrAlgCrypt     = 2
	attrEncap        = 4
	attrTmpl         = 5
	attrLtimeVal     = 9
	attrReplayVal    = 10
	attrAlgAEAD      = 18
	attrAlgAuthTrunc = 20
	attrReplayESNVal = 23
)

// groupExpire is XFRMNLGRP_EXPIRE, the multicast group of expiries.
const groupExpire = 2

// Protocols, modes, directions and actions.
const (
	protoESP = 50

	modeTransport = 0
	modeTunnel    = 1

	dirIn  = 0
	dirOut = 1
	dirFwd = 2

	actionAllow = 0
)

// SA flags (XFRM_STATE_*).
const (
	stateAFUnspec = 32
	stateESN      = 128
)

// udpEncapESPInUDP is UDP_ENCAP_ESPINUDP (RFC 3948), the encapsulation
// type of struct xfrm_encap_tmpl and of the UDP_ENCAP socket option.
const udpEncapESPInUDP = 2

// infinite is XFRM_INF, a lifetime limit that is never reached; 0 would
// expire the SA at once.
const infinite = ^uint64(0)

// Struct sizes.
const (
	sizeSelector       = 56  // struct xfrm_selector
	sizeID             = 24  // struct xfrm_id
	sizeLifetimeCfg    = 64  // struct xfrm_lifetime_cfg
	sizeLifetimeCur    = 32  // struct xfrm_lifetime_cur
	sizeUserSAInfo     = 224 // struct xfrm_usersa_info
	sizeUserSAID       = 24  // struct xfrm_usersa_id
	sizeUserPolicyInfo = 168 // struct xfrm_userpolicy_info
	sizeUserPolicyID   = 64  // struct xfrm_userpolicy_id
	sizeUserTmpl       = 64  // struct xfrm_user_tmpl
	sizeUserExpire     = 232 // struct xfrm_user_expire
	sizeEncapTmpl      = 24  // struct xfrm_encap_tmpl
	sizeAlgo           = 68  // struct xfrm_algo without the key
	sizeAlgoAuth       = 72  // struct xfrm_algo_auth without the key
	sizeAlgoAEAD       = 72  // struct xfrm_algo_aead without the key
	sizeReplayESN      = 24  // struct xfrm_replay_state_esn without the bitmap
	sizeStats          = 12  // struct xfrm_stats
	algNameLen         = 64
)

// Offsets in struct xfrm_usersa_info.
const (
	saSel      = 0
	saID       = 56 // struct xfrm_id: daddr, spi (+16), proto (+20)
	saSaddr    = 80
	saLft      = 96
	saCurLft   = 160
	saStats    = 192
	saSeq      = 204
	saReqID    = 208
	saFamily   = 212
	saMode     = 214
	saReplayWn = 215
	saFlags    = 216
)

// Offsets in struct xfrm_selector.
const (
	selDaddr     = 0
	selSaddr     = 16
	selDport     = 32
	selDportMask = 34
	selSport     = 36
	selSportMask = 38
	selFamily    = 40
	selPrefixD   = 42
	selPrefixS   = 43
	selProto     = 44
	selIfindex   = 48
	selUser      = 52
)

// Offsets in struct xfrm_userpolicy_info.
const (
	polSel      = 0
	polLft      = 56
	polCurLft   = 120
	polPriority = 152
	polIndex    = 156
	polDir      = 160
	polAction   = 161
	polFlags    = 162
	polShare    = 163
)

// Offsets in struct xfrm_user_tmpl.
const (
	tmplID       = 0
	tmplFamily   = 24
	tmplSaddr    = 28
	tmplReqID    = 44
	tmplMode     = 48
	tmplShare    = 49
	tmplOptional = 50
	tmplAalgos   = 52
	tmplEalgos   = 56
	tmplCalgos   = 60
)
