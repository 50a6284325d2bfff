package ike

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoReauth is returned by Reauthenticate for an IKE SA this host did
// not initiate: it does not know where the peer accepts new IKE SAs.
var ErrNoReauth = errors.New("ike: only an IKE SA this host initiated can be reauthenticated")

// Reauthenticate replaces the IKE SA make-before-break (RFC 7296 2.8.3): a
// new IKE SA with IKE_SA_INIT and IKE_AUTH under the same Config (without
// INITIAL_CONTACT, so the peer keeps the old SA meanwhile), the Child SAs
// recreated on it (the first by IKE_AUTH, the others by CREATE_CHILD_SA
// with their selectors and mode), then the old IKE SA deleted with its
// Child SAs. It returns the new IKE SA, which Config.Established is also
// given. If the new IKE SA cannot be set up the old one stays.
func (sa *IKESA) Reauthenticate(ctx context.Context) (*IKESA, error) {
	sa.mu.Lock()
	remote, cfg := sa.lt.origRemote, sa.cfg
	ok := sa.state == stateEstablished && !sa.retired
	var children []*ChildSA
	for _, c := range sa.children {
		if !c.rk.done && c.rk.replacedBy == nil {
			children = append(children, c)
		}
	}
	sa.mu.Unlock()
	if !ok {
		return nil, ErrDeleted
	}
	if !remote.IsValid() {
		return nil, ErrNoReauth
	}
	sa.log.Info("ike: reauthenticating the IKE SA")
	nsa, err := sa.ep.Initiate(ctx, cfg, remote)
	if err != nil {
		if nsa != nil {
			// The new IKE SA came up without its Child SA: keep the old.
			if derr := nsa.Delete(ctx); derr != nil {
				sa.log.Info("ike: delete of the failed reauthentication", "err", derr)
			}
		}
		return nil, fmt.Errorf("ike: reauthenticate: %w", err)
	}
	used := map[*ChildSA]bool{}
	for _, c := range children {
		if n := sameSelectors(nsa.Children(), c, used); n != nil {
			used[n] = true
			continue
		}
		pol := sa.policyOf(c)
		n, err := nsa.CreateChild(ctx, ChildConfig{ESP: pol.ESP, LocalTS: c.LocalTS, RemoteTS: c.RemoteTS, Mode: c.Mode})
		if err != nil {
			sa.log.Warn("ike: reauthentication could not recreate a Child SA", "in", fmt.Sprintf("%08x", c.InSPI), "err", err)
			continue
		}
		used[n] = true
	}
	spiI, spiR := nsa.SPIs()
	sa.log.Info("ike: reauthenticated, deleting the old IKE SA", "new_spii", fmt.Sprintf("%016x", spiI), "new_spir", fmt.Sprintf("%016x", spiR))
	if err := sa.Delete(ctx); err != nil {
		sa.log.Info("ike: delete of the reauthenticated IKE SA", "err", err)
	}
	return nsa, nil
}

// sameSelectors returns the first Child SA of cs, not in used, with c's
// selectors and mode.
func sameSelectors(cs []*ChildSA, c *ChildSA, used map[*ChildSA]bool) *ChildSA {
	for _, n := range cs {
		if !used[n] && n.Mode == c.Mode && fmt.Sprint(n.LocalTS, n.RemoteTS) == fmt.Sprint(c.LocalTS, c.RemoteTS) {
			return n
		}
	}
	return nil
}
