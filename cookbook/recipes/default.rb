#
# Cookbook:: deployhook
# Recipe:: default
#
# For each of job_manager, package_manager and auth_server listed in
# node['deployhook']['components']: render /etc/deployhook/<component>.conf,
# call `deployhook run -f <conf>` (which checks the settings and starts the
# migration in the background), and, when migrating and node['deployhook']['wait']
# is true, `deployhook wait -f <conf> --timeout <t>`, so that a failed
# migration fails the converge.
#
# Every run comes before the first wait: the three migrations use different
# databases and prefixes, so they proceed side by side while the converge
# waits on each in turn.
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

  plan[:components].each do |c|
    template c[:conf_path] do
      source 'component.conf.erb'
      owner 'root'
      group 'root'
      mode '0640'
      variables c[:variables]
    end

    execute "deployhook run #{c[:name]}" do
      command c[:run]
      environment plan[:environment] unless plan[:environment].empty?
      not_if c[:guard] if c[:guard]
    end
  end

  plan[:components].each do |c|
    if c[:wait]
      execute "deployhook wait #{c[:name]}" do
        command c[:wait]
        environment plan[:environment] unless plan[:environment].empty?
        timeout c[:wait_exec_timeout]
        not_if c[:guard] if c[:guard]
      end
    end

    # Reached only when the commands above succeeded: a failed execute ends
    # the converge. The stamp is what the guards compare on the next converge.
    file c[:stamp_path] do
      if c[:stamp]
        content "#{c[:stamp]}\n"
        owner 'root'
        group 'root'
        mode '0644'
      else
        action :delete
      end
    end
  end
end
