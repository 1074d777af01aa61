package testutil

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeT records a failure instead of ending the goroutine.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestLineWithAll(t *testing.T) {
	out := "level=INFO msg=start\nlevel=WARN msg=\"lookup failed\" name=a\nlevel=INFO msg=\"lookup works\" name=b\n"
	tests := []struct {
		name   string
		subs   []string
		want   string
		wantOK bool
	}{
		{"one", []string{"lookup works"}, `level=INFO msg="lookup works" name=b`, true},
		{"all in one line", []string{"lookup", "name=a"}, `level=WARN msg="lookup failed" name=a`, true},
		{"not across lines", []string{"start", "name=b"}, "", false},
		{"absent", []string{"nope"}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := lineWithAll(out, tc.subs)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("lineWithAll(%q) = %q, %v; want %q, %v", tc.subs, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestWaitLineWakesOnWrite(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 5 {
			fmt.Fprintf(&b, "line %d\n", i)
		}
		fmt.Fprintln(&b, "ready port=4")
	}()
	if got := b.WaitLine(t, 10*time.Second, "ready", "port="); got != "ready port=4" {
		t.Errorf("WaitLine = %q", got)
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 6 {
		t.Errorf("String has %d lines, want 6", n)
	}
}

func TestWaitLineTimeoutQuotesTheOutput(t *testing.T) {
	var b SyncBuffer
	b.Write([]byte("something else\n"))
	f := &fakeT{TB: t}
	b.WaitLine(f, 20*time.Millisecond, "wanted")
	if !strings.Contains(f.failed, `["wanted"]`) || !strings.Contains(f.failed, "something else") {
		t.Errorf("failure message %q: want the awaited strings and the output", f.failed)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 10*time.Second, func() (bool, string) {
		n++
		return n == 3, fmt.Sprintf("n = %d", n)
	})
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}

	f := &fakeT{TB: t}
	Eventually(f, 20*time.Millisecond, func() (bool, string) { return false, "still 42" })
	if !strings.Contains(f.failed, "still 42") || !strings.Contains(f.failed, "20ms") {
		t.Errorf("failure message %q: want the last message and the timeout", f.failed)
	}
}
