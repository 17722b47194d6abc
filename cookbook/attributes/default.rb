# Attributes of the deployhook cookbook. See README.md for the full table.
#
# The platform's own settings are read, never defaulted, here:
#   node['continuum']['component_database']['kind']                      store2 | store3 (required on nodes with a component)
#   node['continuum']['component_database']['migrate_store2_to_store3']  true | false; nil means false
# They arrive from cluster.conf's `chef.continuum.component_database`. This
# file sets no default under 'continuum', so it can never shadow the value the
# platform gives at the same precedence level.

# Which of job_manager, package_manager and auth_server run on this node. The
# recipe does nothing for a component that is not listed. The platform's role
# for a host lists the components it places there, at role precedence, e.g.
#   default_attributes('deployhook' => { 'components' => %w(job_manager package_manager) })
default['deployhook']['components'] = []

default['deployhook']['binary']     = '/opt/apcera/deployhook/bin/deployhook'
default['deployhook']['conf_dir']   = '/etc/deployhook'
# Holds one stamp file per component, written after a converge's commands
# succeeded; the guards compare it (see README.md "Guards").
default['deployhook']['state_dir']  = '/var/lib/deployhook'

# Migrate online (DESIGN.md "Online migration and cutover"): the components
# keep running and store2 is frozen for writes at cutover. false adds
# --offline to `deployhook run`, for roles that cannot create the freeze
# trigger; then stop the components first (runbook step 2).
default['deployhook']['online'] = true

# Block the converge until the migration is done (or failed: the converge fails).
default['deployhook']['wait']         = true
default['deployhook']['wait_timeout'] = '10m' # a Go duration

# Risk flags: each maps to the `deployhook run` flag of the same name. Set them
# for the one deploy that needs them, then remove them again.
default['deployhook']['accept_empty_store3']  = false # --accept-empty-store3
default['deployhook']['accept_store2_revert'] = false # --accept-store2-revert

# --hostname for `deployhook run` (recorded in .status/.done); nil: the machine's host name.
default['deployhook']['hostname'] = nil

# Environment of the deployhook commands. Passwords never go into the conf or
# onto a command line: PostgreSQL's comes from a .pgpass file (PGPASSFILE) and
# Consul's token from consul.token_file. PGPASSWORD, CONSUL_HTTP_TOKEN and the
# like are refused here because Chef prints a failed resource's environment.
default['deployhook']['pgpassfile']  = nil # sets PGPASSFILE
default['deployhook']['environment'] = {}  # e.g. { 'CONSUL_CACERT' => '/etc/consul/ca.pem' }

{
  'job_manager'     => 'jmdb',
  'package_manager' => 'pmdb',
  'auth_server'     => 'asdb',
}.each do |component, database|
  # nil: the line is left out of the conf and deployhook falls back to libpq's
  # PG* variables, with the component's database. Never put a password here.
  default['deployhook'][component]['postgres']['url']   = nil
  default['deployhook'][component]['postgres']['table'] = 'store2_records'
  # nil: CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
  default['deployhook'][component]['consul']['address'] = nil
  default['deployhook'][component]['consul']['prefix']  = "apcera/store3/#{database}/"
  # nil: CONSUL_HTTP_TOKEN / CONSUL_HTTP_TOKEN_FILE from the environment.
  default['deployhook'][component]['consul']['token_file'] = nil
  default['deployhook'][component]['log_dir'] = "/var/log/continuum-#{component.tr('_', '-')}-migration"
end
