#
# Cookbook:: deployhook
# Recipe:: default
#
# For each of job_manager, package_manager and auth_server listed in
# node['deployhook']['components'], a deployhook_migration
# (resources/migration.rb): action :run renders
# /etc/deployhook/<component>.conf and calls `deployhook run -f <conf>`
# (which checks the settings and starts the migration in the background);
# action :wait, when migrating and node['deployhook']['wait'] is true, calls
# `deployhook wait -f <conf> --timeout <t>`, so that a failed migration fails
# the converge, and then writes the stamp the guards compare.
#
# Every :run comes before the first :wait: the three migrations use
# different databases and prefixes, so they proceed side by side while the
# converge waits on each in turn.
#
# DeployhookCookbook.plan (libraries/deployhook.rb) checks every setting and
# raises DeployhookCookbook::SettingsError before any resource is declared.

plan = DeployhookCookbook.plan(node)

unless plan[:components].empty?
  [plan[:conf_dir], plan[:state_dir]].uniq.each do |dir|
    directory dir do
      owner 'root'
      group 'root'
      mode '0755'
      recursive true
    end
  end

  %i(run wait).each do |act|
    plan[:components].each do |props|
      deployhook_migration props[:component] do
        props.each { |prop, value| send(prop, value) unless prop == :component }
        action act
      end
    end
  end
end
