#!/usr/bin/perl
# What Evergreen's CallHTTP action-trigger reactor does with an event, step by step, with the
# same Perl modules (Template Toolkit, Config::General, LWP): a test double of the reactor
# for the README's recipe, written from Evergreen's Open-ILS/src/perlmods/lib/OpenILS/
# Application/Trigger/Reactor/CallHTTP.pm and Trigger/Reactor.pm (run_TT).
#
# Reads one JSON object on standard input: {"template": TT text, "target": the event's
# target as nested objects (as the event definition's environment fleshes it), "event":
# {"id": N}}. Renders the template, parses it as the reactor does, sends the request, and
# prints one JSON object: {"sent": false} when the reactor would send nothing, else
# {"sent": true, "status": N, "body": TEXT, "request": {"method", "uri", "headers",
# "content"}} with the request as LWP sent it (its default headers merged).
use strict;
use warnings;

use Config::General qw(ParseConfig);
use JSON::PP;
use LWP::UserAgent;
use Template;

my $json  = JSON::PP->new->canonical;
my $input = $json->decode( do { local $/; <STDIN> } );

sub finish { print $json->encode(shift), "\n"; exit 0 }

# run_TT: the event's environment goes to the template as is (target, event, helpers, ...)
my $output = '';
my $tt     = Template->new;
my $env    = { target => $input->{target}, event => $input->{event}, helpers => {} };
$tt->process( \$input->{template}, $env, \$output ) or die 'template: ' . $tt->error . "\n";
finish( { sent => JSON::PP::false } ) unless $output;

# handler: the output is a Config::General document, parsed with -AutoTrue
my %config = ParseConfig( -AutoTrue => 1, -String => $output );
finish( { sent => JSON::PP::false } ) unless %config;
my ( $url, $method ) = @config{qw(url method)};
finish( { sent => JSON::PP::false } ) unless $url and $method;
finish( { sent => JSON::PP::false } ) unless grep { $_ eq $method } qw(post get put delete head);
die "Parameters: not used by the recipe, not restated here\n" if $config{Parameters};

my $ua = LWP::UserAgent->new;
$ua->agent( $config{agent} ? $config{agent} : 'EvergreenReactor/1.0' );
my $headers = $config{Headers} || {};
$ua->default_header( $_ => $headers->{$_} ) for keys %$headers;

my @arguments = ($url);
push @arguments, Content => $config{content} if grep { $_ eq $method } qw(put post);
my $response = $ua->$method(@arguments);

my $sent = $response->request;
my %sent_headers = map { $_ => scalar $sent->header($_) } $sent->header_field_names;
finish(
    {
        sent    => JSON::PP::true,
        status  => 0 + $response->code,
        body    => $response->decoded_content,
        request => {
            method  => $sent->method,
            uri     => $sent->uri->as_string,
            headers => \%sent_headers,
            content => $sent->content,
        },
    }
);
