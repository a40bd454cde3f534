package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sbx-run/sbx"
)

// warmReason is the transition reason of a sandbox handed out by a pool.
const warmReason = "warm pool"

// WarmCreate measures n creates of image that hit the server's warm pool
// for it, to the first output of an exec, like ColdCreate. Between runs it
// waits until the pool has refilled, so that it measures hits (a miss is
// counted as the error WARM_POOL_MISS and its time left out). Without a
// pool for image it returns a scenario with only a note.
func (b *SBX) WarmCreate(ctx context.Context, n int, image string) *Scenario {
	s := &Scenario{Name: "warm_create", System: "sbx", Errors: map[string]int{},
		Note: "Run(" + image + ") from a warm pool → exec `echo hi` → first output byte, pool refilled between runs"}
	ready := func() error {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			pools, err := b.C.ListPools(ctx)
			if err != nil {
				return err
			}
			found := false
			for _, p := range pools {
				if p.Image == image {
					found = true
					if p.Idle >= max(p.MinIdle, 1) {
						return nil
					}
					if p.LastError != "" && time.Now().After(deadline) {
						return fmt.Errorf("pool %s does not fill: %s", p.Key, p.LastError)
					}
				}
			}
			if !found {
				return fmt.Errorf("the server has no warm pool for %s", image)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("pool for %s not refilled within 2m", image)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := ready(); err != nil {
		s.Note = "skipped: " + err.Error()
		return s
	}
	for i := 0; i < n; i++ {
		if err := ready(); err != nil {
			s.Errors[reasonOf(err)]++
			break
		}
		start := time.Now()
		sb, err := b.C.Run(ctx, sbx.Image(image))
		if err != nil {
			s.Errors[reasonOf(err)]++
			continue
		}
		p, err := sb.Exec(ctx, []string{"echo", "hi"})
		if err == nil {
			_, err = p.Stdout.Read(make([]byte, 1))
		}
		d := time.Since(start)
		if err != nil {
			s.Errors[reasonOf(err)]++
		} else {
			p.Wait()
			if claimedWarm(sb.Info()) {
				s.Samples = append(s.Samples, Ms(d))
			} else {
				s.Errors["WARM_POOL_MISS"]++
			}
		}
		sb.Delete(context.WithoutCancel(ctx))
	}
	return Finish(s)
}

func claimedWarm(info sbx.Info) bool {
	for _, tr := range info.Transitions {
		if strings.Contains(tr.Reason, warmReason) {
			return true
		}
	}
	return false
}
