name             'deployhook'
maintainer       'deployhook maintainers'
maintainer_email 'deployhook@apcera.invalid'
license          'All Rights Reserved'
description      'Renders the deployhook component confs on central hosts and runs the ' \
                 'store2 -> store3 migration of the Job Manager, Package Manager and ' \
                 'Auth Server through `deployhook run` and `deployhook wait`.'
version          '0.1.0'
chef_version     '>= 15.3' # unified_mode custom resources
