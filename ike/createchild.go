package ike

import (
	"context"
	"errors"
	"fmt"

	"github.com/espy-dpi/espy/ike/message"
)

// MaxChildSAs bounds the Child SAs a peer may set up on one IKE SA; further
// CREATE_CHILD_SA requests for new ones are answered NO_ADDITIONAL_SAS.
const MaxChildSAs = 64

// ChildConfig is the policy of one additional Child SA: its ESP proposals
// (groups in them add PFS), traffic selectors (from this side's point of
// view) and mode. Empty proposals or selectors are the Config's; empty
// selectors there too mean this side's or the peer's IKE address.
type ChildConfig struct {
	ESP               []Proposal
	LocalTS, RemoteTS []message.Selector
	Mode              Mode
}

// validateChildren checks the proposals of c.Children.
func (c *Config) validateChildren() error {
	for i := range c.Children {
		cc := &c.Children[i]
		if len(cc.ESP) > 255 {
			return fmt.Errorf("%w: Child SA configuration %d: more than 255 proposals", ErrConfig, i+1)
		}
		for j := range cc.ESP {
			if err := cc.ESP[j].validate(false, c.AllowWeak); err != nil {
				return fmt.Errorf("child configuration %d, ESP proposal %d: %w", i+1, j+1, err)
			}
		}
	}
	return nil
}

// mainChild is the Child SA policy of the Config itself, the one IKE_AUTH
// negotiates.
func (c *Config) mainChild() *ChildConfig {
	return &ChildConfig{ESP: c.ESP, LocalTS: c.LocalTS, RemoteTS: c.RemoteTS, Mode: c.Mode}
}

// withDefaults returns cc with empty proposals and selectors replaced by
// cfg's.
func (cc ChildConfig) withDefaults(cfg *Config) *ChildConfig {
	if len(cc.ESP) == 0 {
		cc.ESP = cfg.ESP
	}
	if len(cc.LocalTS) == 0 {
		cc.LocalTS = cfg.LocalTS
	}
	if len(cc.RemoteTS) == 0 {
		cc.RemoteTS = cfg.RemoteTS
	}
	return &cc
}

// policyOf returns the policy Child SA c was negotiated under.
func (sa *IKESA) policyOf(c *ChildSA) *ChildConfig {
	if c.policy != nil {
		return c.policy
	}
	return sa.cfg.mainChild()
}

// CreateChild negotiates an additional Child SA on the IKE SA with a
// CREATE_CHILD_SA exchange (RFC 7296 1.3.1) under cc: its proposals (with a
// KE for the first PFS group among them), selectors and mode. The new SA is registered before
// CreateChild returns it; it is rekeyed and expires on its own timers
// like the others. A refusal is returned as a *NotifyError.
func (sa *IKESA) CreateChild(ctx context.Context, cc ChildConfig) (*ChildSA, error) {
	sa.mu.Lock()
	if sa.state != stateEstablished || sa.retired {
		sa.mu.Unlock()
		return nil, ErrDeleted
	}
	pol := cc.withDefaults(sa.cfg)
	tsi := selectorsOr(pol.LocalTS, sa.local.Addr())
	tsr := selectorsOr(pol.RemoteTS, sa.remote.Addr())
	sa.mu.Unlock()
	if len(pol.ESP) > 255 || len(tsi) > 255 || len(tsr) > 255 {
		return nil, fmt.Errorf("%w: more than 255 proposals or selectors", ErrConfig)
	}
	for i := range pol.ESP {
		if err := pol.ESP[i].validate(false, sa.cfg.AllowWeak); err != nil {
			return nil, fmt.Errorf("ESP proposal %d: %w", i+1, err)
		}
	}
	st, resp, err := sa.childExchange(ctx, nil, pol, tsi, tsr, pol.Mode)
	if err != nil {
		return nil, err
	}
	child, err := sa.rekeyInstall(nil, st, resp)
	if err != nil {
		if errors.Is(err, errRefusedNew) {
			// The peer installed an SA we do not accept: delete it.
			if _, derr := sa.request(ctx, message.INFORMATIONAL, []message.Payload{&message.Delete{Protocol: message.ProtoESP, SPISize: 4, SPIs: [][]byte{st.spi}}}); derr != nil {
				sa.log.Warn("ike: delete refused Child SA", "err", derr)
			}
		}
		return nil, err
	}
	sa.log.Info("ike: additional Child SA established", "in", fmt.Sprintf("%08x", child.InSPI), "out", fmt.Sprintf("%08x", child.OutSPI),
		"suite", child.Suite.String(), "pfs", child.Suite.DH)
	return child, nil
}

// authPolicyLocked picks the Child SA policy for an IKE_AUTH request the
// way newChildAnswerLocked does and returns a copy of the Config with that
// policy's proposals, selectors and mode, and the policy (nil: the
// Config's own). Without a match the Config itself is returned, whose
// checks then refuse the Child SA.
func (sa *IKESA) authPolicyLocked(ps []message.Payload, tsi, tsr *message.TS) (*Config, *ChildConfig) {
	mode := ModeTunnel
	if message.FindNotify(ps, message.USE_TRANSPORT_MODE) != nil {
		mode = ModeTransport
	}
	if sa.policyFits(sa.cfg.mainChild(), tsi, tsr, mode) {
		return sa.cfg, nil
	}
	for i := range sa.cfg.Children {
		pol := sa.cfg.Children[i].withDefaults(sa.cfg)
		if sa.policyFits(pol, tsi, tsr, mode) {
			c := *sa.cfg
			c.ESP, c.LocalTS, c.RemoteTS, c.Mode = pol.ESP, pol.LocalTS, pol.RemoteTS, pol.Mode
			return &c, pol
		}
	}
	return sa.cfg, nil
}

// policyFits reports whether pol has mode and selectors intersecting the
// proposed ones.
func (sa *IKESA) policyFits(pol *ChildConfig, tsi, tsr *message.TS, mode Mode) bool {
	return pol.Mode == mode && len(narrow(tsi.Selectors, selectorsOr(pol.RemoteTS, sa.remote.Addr()))) > 0 &&
		len(narrow(tsr.Selectors, selectorsOr(pol.LocalTS, sa.local.Addr()))) > 0
}

// newChildAnswerLocked answers a CREATE_CHILD_SA request for an additional
// Child SA: the first of the Config's own policy and Config.Children whose
// mode matches and whose selectors intersect the proposed ones takes it.
func (sa *IKESA) newChildAnswerLocked(ps []message.Payload, saP *message.SA, nonce *message.Nonce, tsi, tsr *message.TS, mode Mode) []message.Payload {
	if len(sa.children) >= MaxChildSAs {
		return sa.refuseChild(message.NO_ADDITIONAL_SAS, nil, fmt.Sprintf("%d Child SAs", len(sa.children)))
	}
	pols := []*ChildConfig{sa.cfg.mainChild()}
	for i := range sa.cfg.Children {
		pols = append(pols, sa.cfg.Children[i].withDefaults(sa.cfg))
	}
	for _, pol := range pols {
		if !sa.policyFits(pol, tsi, tsr, mode) {
			continue
		}
		child, out := sa.answerChildLocked(ps, pol, saP, nonce, tsi, tsr, mode)
		if child != nil {
			sa.log.Info("ike: additional Child SA established by the peer", "in", fmt.Sprintf("%08x", child.InSPI),
				"out", fmt.Sprintf("%08x", child.OutSPI), "suite", child.Suite.String(), "pfs", child.Suite.DH)
		}
		return out
	}
	return sa.refuseChild(message.TS_UNACCEPTABLE, nil, "no Child SA configuration for these selectors and mode")
}
