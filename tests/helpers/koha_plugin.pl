#!/usr/bin/perl
# Runs the README's Koha plugin as Koha::Plugins->call runs a hook (Koha/Plugins.pm): the
# plugin's method, in an eval, with the parameters Koha passes (Koha/Hold.pm,
# C4/Circulation.pm). Koha itself is not here: Koha::Plugins::Base is a stand-in with
# new and retrieve_data, and the holds, items, patrons and checkouts are objects whose
# methods answer from JSON. The plugin's HTTP calls really go out (LWP).
#
# Usage: koha_plugin.pl PLUGIN_DIR < {"class", "data": {retrieve_data's keys},
#     "calls": [{"hook", "action", "hold" | "checkout", "type"}]}
# Prints {"exchanges": [{"method", "uri", "headers", "content", "status", "body"}],
# "warnings": [TEXT]}: every request the plugin sent, in order, and what it warned.
use strict;
use warnings;

use JSON::PP;
use LWP::UserAgent;

package Koha::Plugins::Base {
    sub new {
        my ( $class, $args ) = @_;
        return bless { %{ $args || {} }, class => $class }, $class;
    }
    sub retrieve_data { my ( $self, $key ) = @_; return $main::DATA->{$key} }
}
$INC{'Koha/Plugins/Base.pm'} = __FILE__;

# An object whose methods answer from a hash; a nested hash answers as such an object.
package Stand::In {
    our $AUTOLOAD;
    sub new { my ( $class, $fields ) = @_; return bless {%$fields}, $class }
    sub AUTOLOAD {
        my $self = shift;
        ( my $name = $AUTOLOAD ) =~ s/.*:://;
        return if $name eq 'DESTROY';
        die "no method $name here\n" unless exists $self->{$name};
        my $value = $self->{$name};
        return ref $value eq 'HASH' ? Stand::In->new($value) : $value;
    }
}

package main;

our $DATA;
my @exchanges;
my @warnings;

# Every user agent the plugin makes reports what it sent and what came back.
my $make_agent = \&LWP::UserAgent::new;
{
    no warnings 'redefine';
    *LWP::UserAgent::new = sub {
        my $agent = $make_agent->(@_);
        $agent->add_handler(
            response_done => sub {
                my ($response) = @_;
                my $sent = $response->request;
                push @exchanges, {
                    method  => $sent->method,
                    uri     => $sent->uri->as_string,
                    headers => { map { $_ => scalar $sent->header($_) } $sent->header_field_names },
                    content => $sent->content,
                    status  => 0 + $response->code,
                    body    => $response->decoded_content,
                };
                return;
            }
        );
        return $agent;
    };
}

my ($plugin_dir) = @ARGV;
unshift @INC, $plugin_dir;
my $json  = JSON::PP->new->canonical;
my $input = $json->decode( do { local $/; <STDIN> } );
$DATA = $input->{data};
( my $file = "$input->{class}.pm" ) =~ s{::}{/}g;
require $file;
my $plugin = $input->{class}->new( {} );

local $SIG{__WARN__} = sub { push @warnings, $_[0] };
for my $call ( @{ $input->{calls} } ) {
    my $object  = $call->{hold} || $call->{checkout};
    my $key     = $call->{hold} ? 'hold' : 'checkout';
    my $payload = { $key => Stand::In->new($object) };
    $payload->{type} = $call->{type} if $call->{type};
    my $hook = $call->{hook};
    next unless $plugin->can($hook);    # Koha::Plugins->call: only plugins that have it
    eval { $plugin->$hook( { action => $call->{action}, payload => $payload } ); 1 }
        or push @warnings, "Plugin error: $@";
}
print $json->encode( { exchanges => \@exchanges, warnings => \@warnings } ), "\n";
