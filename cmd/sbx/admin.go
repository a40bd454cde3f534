package main

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-run/sbx"
)

func init() { commands = append(commands, newAdminCmd) }

// keyWarning follows every printed secret key.
const keyWarning = "Store this API key now: the server keeps only its hash and cannot show it again."

// newAdminCmd is `sbx admin`: tenants and API keys (the AdminService).
func newAdminCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "admin",
		Short: "Manage tenants and API keys (admin tenants; any tenant for its own keys)",
		Long: `Manage the server's tenants and their API keys. Tenant commands need an admin tenant's
key: the server's admins (sbx serve --admin TENANT_ID; in local mode the local tenant is
always one). Any tenant may list, create and revoke its own keys.`,
		Args: exactArgs(0, "a subcommand: tenant or key"),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	tenant := &cobra.Command{
		Use:   "tenant",
		Short: "Create, list and update tenants",
		Args:  exactArgs(0, "a subcommand: create, ls or update"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	key := &cobra.Command{
		Use:   "key",
		Short: "Create, list and revoke API keys",
		Args:  exactArgs(0, "a subcommand: create, ls or revoke"),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	add := func(parent *cobra.Command, subs ...*cobra.Command) {
		for _, s := range subs {
			s.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErrorf("%v", err) })
			parent.AddCommand(s)
		}
	}
	add(tenant, newAdminTenantCreateCmd(), newAdminTenantLsCmd(), newAdminTenantUpdateCmd())
	add(key, newAdminKeyCreateCmd(), newAdminKeyLsCmd(), newAdminKeyRevokeCmd())
	add(c, tenant, key)
	return c
}

// tenantJSON and keyJSON are the JSON shapes of `sbx admin ... --json`.
type tenantJSON struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	MaxSandboxes int       `json:"maxSandboxes"`
	CreatedAt    time.Time `json:"createdAt,omitzero"`
}

type keyJSON struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenantId"`
	Label     string    `json:"label,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
	// APIKey is set only by the commands that create a key.
	APIKey string `json:"apiKey,omitempty"`
}

func toTenantJSON(t sbx.Tenant) tenantJSON {
	return tenantJSON{ID: t.ID, Name: t.Name, MaxSandboxes: t.MaxSandboxes, CreatedAt: t.CreatedAt}
}

func toKeyJSON(k sbx.APIKeyInfo) keyJSON {
	return keyJSON{ID: k.ID, TenantID: k.TenantID, Label: k.Label, CreatedAt: k.CreatedAt}
}

func quotaText(n int) string {
	if n == 0 {
		return "default"
	}
	return strconv.Itoa(n)
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// printNewKey prints a key just made: the secret on stdout, on a line of
// its own, and the warning on stderr.
func printNewKey(cmd *cobra.Command, k sbx.NewAPIKey) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "API key %s of tenant %s:\n\n    %s\n\n", k.ID, k.TenantID, k.Secret)
	fmt.Fprintln(cmd.ErrOrStderr(), keyWarning)
}

func newAdminTenantCreateCmd() *cobra.Command {
	var (
		maxSandboxes int
		asJSON       bool
	)
	c := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant and its first API key (printed once)",
		Long: `create makes a tenant named NAME (1-128 of [A-Za-z0-9_.-]) and its first API key, which
it prints once: store it, since the server keeps only its hash.`,
		Example: `  sbx admin tenant create team-ml --max-sandboxes 50
  sbx admin tenant create ci --json | jq -r .key.apiKey`,
		Args: exactArgs(1, "the tenant's NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxSandboxes < 0 {
				return usageErrorf("--max-sandboxes %d must not be negative (0: the server's default)", maxSandboxes)
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			t, k, err := client.CreateTenant(cmd.Context(), args[0], maxSandboxes)
			if err != nil {
				return err
			}
			if asJSON {
				kj := toKeyJSON(k.APIKeyInfo)
				kj.APIKey = k.Secret
				if err := writeJSON(cmd.OutOrStdout(), struct {
					Tenant tenantJSON `json:"tenant"`
					Key    keyJSON    `json:"key"`
				}{toTenantJSON(t), kj}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), keyWarning)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created tenant %s (name %s, max sandboxes: %s)\n", t.ID, t.Name, quotaText(t.MaxSandboxes))
			printNewKey(cmd, k)
			return nil
		},
	}
	c.Flags().IntVar(&maxSandboxes, "max-sandboxes", 0, "quota of concurrent sandboxes, 0..100000 (0: the server's default)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (with the key in key.apiKey)")
	return c
}

func newAdminTenantLsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List tenants",
		Args:    exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			list, err := client.ListTenants(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				views := make([]tenantJSON, 0, len(list))
				for _, t := range list {
					views = append(views, toTenantJSON(t))
				}
				return writeJSON(cmd.OutOrStdout(), views)
			}
			return writeTenants(cmd.OutOrStdout(), list)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func writeTenants(w io.Writer, list []sbx.Tenant) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tMAX SANDBOXES\tCREATED")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Name, quotaText(t.MaxSandboxes), timeText(t.CreatedAt))
	}
	return tw.Flush()
}

func newAdminTenantUpdateCmd() *cobra.Command {
	var maxSandboxes int
	c := &cobra.Command{
		Use:     "update TENANT --max-sandboxes N",
		Short:   "Change a tenant's quota of concurrent sandboxes",
		Example: `  sbx admin tenant update tn-0123456789abcdef --max-sandboxes 200`,
		Args:    exactArgs(1, "the TENANT id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("max-sandboxes") {
				return usageErrorf("nothing to update: give --max-sandboxes N")
			}
			if maxSandboxes < 0 {
				return usageErrorf("--max-sandboxes %d must not be negative (0: the server's default)", maxSandboxes)
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			t, err := client.SetTenantQuota(cmd.Context(), args[0], maxSandboxes)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "updated tenant %s (max sandboxes: %s)\n", t.ID, quotaText(t.MaxSandboxes))
			return nil
		},
	}
	c.Flags().IntVar(&maxSandboxes, "max-sandboxes", 0, "quota of concurrent sandboxes, 0..100000 (0: the server's default)")
	return c
}

func newAdminKeyCreateCmd() *cobra.Command {
	var (
		label  string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "create TENANT",
		Short: "Issue another API key for a tenant (printed once)",
		Example: `  sbx admin key create tn-0123456789abcdef --label "ci runner"
  sbx admin key create local --json | jq -r .apiKey`,
		Args: exactArgs(1, "the TENANT id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			k, err := client.CreateAPIKey(cmd.Context(), args[0], label)
			if err != nil {
				return err
			}
			if asJSON {
				kj := toKeyJSON(k.APIKeyInfo)
				kj.APIKey = k.Secret
				if err := writeJSON(cmd.OutOrStdout(), kj); err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), keyWarning)
				return nil
			}
			printNewKey(cmd, k)
			return nil
		},
	}
	c.Flags().StringVar(&label, "label", "", "what the key is for (at most 128 printable characters)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (with the key in apiKey)")
	return c
}

func newAdminKeyLsCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "ls [TENANT]",
		Aliases: []string{"list"},
		Short:   "List a tenant's API keys (yours without TENANT): ids and labels, never the keys",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenantID := ""
			if len(args) == 1 {
				tenantID = args[0]
			}
			client, err := newClient()
			if err != nil {
				return err
			}
			list, err := client.ListAPIKeys(cmd.Context(), tenantID)
			if err != nil {
				return err
			}
			if asJSON {
				views := make([]keyJSON, 0, len(list))
				for _, k := range list {
					views = append(views, toKeyJSON(k))
				}
				return writeJSON(cmd.OutOrStdout(), views)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTENANT\tLABEL\tCREATED")
			for _, k := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.TenantID, k.Label, timeText(k.CreatedAt))
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newAdminKeyRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke KEY_ID...",
		Short: "Revoke API keys: at once on this server, within a minute on other replicas",
		Long: `revoke deletes API keys by id (from sbx admin key ls). A revoked key fails with
UNAUTHENTICATED at once on the server that revoked it, and within one minute on other
replicas sharing its PostgreSQL store. An admin tenant's last key cannot be revoked.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client, err := newClient()
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := client.RevokeAPIKey(cmd.Context(), id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked API key %s\n", id)
			}
			return nil
		},
	}
}
