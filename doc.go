// Package sbx is the Go client of sbx, a self-hostable sandbox platform.
//
// It follows the W&B Serverless Sandboxes / CoreWeave Sandbox client: Run
// starts a sandbox and returns as soon as the server accepted it; calls that
// need a running sandbox (Exec, ReadFile, WriteFile) wait for it; Exec
// returns a Process whose Stdout and Stderr stream while it runs and whose
// Result collects what is left; a Session gives its sandboxes shared
// defaults, keeps them alive with heartbeats, and stops them all on Close.
//
//	client, err := sbx.NewClient()
//	sb, err := client.Run(ctx, sbx.Image("python:3.11"))
//	defer sb.Stop(ctx)
//	p, err := sb.Exec(ctx, []string{"python", "-c", "print(1+1)"}, sbx.Check())
//	res, err := p.Result() // res.Stdout == "2\n"; a non-zero exit is an *ExitError
//
// A Client is configured by options, else by the environment (SBX_URL,
// SBX_API_KEY), else by the credentials file that a local `sbx serve` writes
// (DefaultCredentialsPath), else it talks to DefaultURL.
//
// Every error returned by this package wraps one of the Err* kinds, so that
// errors.Is(err, sbx.ErrNotFound) works; *Error carries the server's
// machine-readable Reason and, for quota errors, RetryAfter.
package sbx
