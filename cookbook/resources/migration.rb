#
# Cookbook:: deployhook
# Resource:: migration (deployhook_migration)
#
# One component's store2 -> store3 migration on this node: the component
# conf, `deployhook run`, and (action :wait) `deployhook wait`.
#
#   deployhook_migration 'job_manager' do
#     kind 'store3'
#     migrate true
#     action :run        # render the conf, call `deployhook run`
#   end
#   deployhook_migration 'job_manager' do
#     kind 'store3'
#     migrate true
#     action :wait       # call `deployhook wait` when migrating, then stamp
#   end
#
# The default recipe declares every component's :run before the first
# :wait, so that the migrations proceed side by side. The commands, the
# stamp and the guard come from DeployhookCookbook.migration
# (libraries/deployhook.rb), which checks the settings again.

unified_mode true
provides :deployhook_migration

property :component, String, name_property: true, equal_to: DeployhookCookbook::COMPONENTS

# Settings: chef.continuum.component_database of cluster.conf.
property :kind, String, required: true, equal_to: DeployhookCookbook::KINDS
property :migrate, [true, false], default: false

# The component conf's other lines; nil leaves a line out.
property :postgres_url, [String, nil]
property :postgres_table, [String, nil], default: 'store2_records'
property :consul_address, [String, nil]
property :consul_prefix, [String, nil]
property :consul_token_file, [String, nil]
property :log_dir, [String, nil]

# Where things are.
property :binary, String, default: '/opt/apcera/deployhook/bin/deployhook'
property :conf_dir, String, default: '/etc/deployhook'
property :state_dir, String, default: '/var/lib/deployhook'
property :environment, Hash, default: {}

# Waiting.
property :wait, [true, false], default: true
property :timeout, String, default: '10m'

# Flags of `deployhook run`.
property :online, [true, false], default: true # false: --offline
property :hostname, [String, nil]
property :accept_empty_store3, [true, false], default: false
property :accept_store2_revert, [true, false], default: false

default_action :run

action_class do
  # plan is DeployhookCookbook.migration over this resource's properties:
  # the checks, the commands, the stamp and its guard.
  def plan
    @plan ||= DeployhookCookbook.migration(
      new_resource.class.properties.keys.to_h { |k| [k, new_resource.send(k)] }
    )
  end
end

# :run renders the conf and calls `deployhook run`, which checks the
# settings against the stores and starts the migration in the background.
action :run do
  p = plan
  env = new_resource.environment

  template p[:conf_path] do
    source 'component.conf.erb'
    cookbook 'deployhook'
    owner 'root'
    group 'root'
    mode '0640'
    variables p[:variables]
  end

  execute "deployhook run #{new_resource.component}" do
    command p[:run]
    environment env unless env.empty?
    not_if p[:guard] if p[:guard]
  end
end

# :wait blocks until the migration is done (a failure fails the converge),
# streaming wait's progress to the Chef log, then writes the stamp the
# guards compare. A failed execute ends the converge, so the stamp exists
# only when run (and wait, when it ran) succeeded with these settings.
action :wait do
  p = plan
  env = new_resource.environment

  if p[:wait]
    execute "deployhook wait #{new_resource.component}" do
      command p[:wait]
      environment env unless env.empty?
      timeout p[:wait_exec_timeout]
      live_stream true
      not_if p[:guard] if p[:guard]
    end
  end

  file p[:stamp_path] do
    if p[:stamp]
      content "#{p[:stamp]}\n"
      owner 'root'
      group 'root'
      mode '0644'
    else
      action :delete
    end
  end
end
